"""The setup form without Textual: its tabs, state, conversion and the model/data inspection."""
