"""One run's life for any front end: its folder, last.pt, exports and outcome (`driver.RunDriver`, used by the app's
Session and by `nktui train`), and `client.RunClient`, what the app talks to: named commands out, records, results
and the run's published values in (in-process for now). Above the engine (`nktui.training`), below the app and
the command line. Importing this package imports neither torch nor Textual.
"""
