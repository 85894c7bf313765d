"""Prompt templates: Jinja2 files that render to chat messages."""

from ponder.prompts.library import PromptLibrary

__all__ = ["PromptLibrary"]
