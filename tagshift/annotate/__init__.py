"""`tagshift annotate`: sentences annotated or corrected by people in the browser, one at a
time, with suggestions from a model, patterns or a corpus (tasks.py); every answer stored in
SQLite as it is given (store.py); a FastAPI server and its one self-contained page (app.py,
static/annotate.html); accepted answers written out as a corpus (export.py)."""
