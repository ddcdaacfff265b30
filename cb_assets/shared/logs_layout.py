"""What the platform keeps under a logs root, beside upstream's `<run_name>/…` tree."""

ATTEMPTS_DIR = "_attempts"  # every attempt's process log, archived folders and claims
ATTEMPT_MARKER = "cb_assets_attempt.json"  # in a pair folder: which attempt wrote it
