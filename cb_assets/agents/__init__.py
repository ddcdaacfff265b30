"""Offline agents that run through the real cooperbench runner without an API key."""

import os

# cooperbench imports litellm, which otherwise tries to download its price table.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
