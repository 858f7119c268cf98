"""Prompting from a notebook: ask(), chat() conversations and the %%ask cell magic."""
