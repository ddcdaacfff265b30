import os

# Read when the definitions load: retries in tests back off for 0.1 s, not 10 s.
os.environ.setdefault("CB_RETRY_DELAY_SECONDS", "0.1")
