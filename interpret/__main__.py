from interpret.cli import app

app(prog_name="interpret")
