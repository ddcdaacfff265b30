"""Offline agents that run through the real cooperbench runner without an API key."""
