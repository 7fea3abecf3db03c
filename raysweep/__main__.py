from raysweep.cli import run

run()
