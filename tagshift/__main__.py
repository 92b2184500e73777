from tagshift.cli import main

main()
