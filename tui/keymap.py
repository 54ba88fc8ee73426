"""Every screen's keys in one table: what a key does where, in the footer's order."""

from textual.binding import Binding

# A screen's footer shows its keys in the order of this table. Flags: "hidden" (not in the
# footer), "priority" (before the focused widget, e.g. an Input), "display=X" (shown as X).
# fmt: off
KEYS: list[tuple[str, str, str, str, str]] = [
    # screen         key                         action             footer              flags
    ("app",          "ctrl+q",                   "quit",            "Quit",             "priority"),
    # Start and Queue are buttons in the status bar (with their keys), so the footer keeps
    # room for ^q Quit at 80 columns.
    ("setup",        "ctrl+r",                   "start",           "Start",            "hidden priority"),
    ("setup",        "ctrl+g",                   "queue",           "Queue",            "hidden priority"),
    # priority: an Input would otherwise take ctrl+e as "end of line"
    ("setup",        "ctrl+e",                   "estimate",        "Estimate",         "priority"),
    ("setup",        "ctrl+o",                   "load",            "Load",             ""),
    ("setup",        "ctrl+s",                   "save",            "Save",             ""),
    ("setup",        "ctrl+t",                   "browse",          "Pick data file",   "hidden"),
    ("setup",        "ctrl+l",                   "runs",            "Runs",             ""),
    ("setup",        "escape",                   "back",            "Back",             ""),
    # The tabs from anywhere in the form; the cursor lands in the tab's first field. (alt+digit
    # arrives as a symbol from many terminals, so it is not used.)
    ("setup",        "ctrl+pagedown,alt+right",  "next_tab(1)",     "Next tab",         "priority display=^PgDn"),
    ("setup",        "ctrl+pageup,alt+left",     "next_tab(-1)",    "Previous tab",     "hidden priority"),
    ("monitor",      "s",                        "stop",            "Stop",             ""),
    ("monitor",      "u",                        "resume",          "Resume",           ""),
    ("monitor",      "n",                        "setup",           "Tweak",            ""),
    ("monitor",      "v",                        "toggle_view",     "Plot",             ""),
    ("monitor",      "m",                        "toggle_metrics",  "Matrix",           ""),
    ("monitor",      "g",                        "toggle_samples",  "Samples",          ""),
    ("monitor",      "t",                        "tryit",           "Try",              ""),
    ("monitor",      "e",                        "export",          "Export",           ""),
    ("monitor",      "l",                        "runs",            "Runs",             ""),
    ("monitor",      "q",                        "app.quit",        "Quit",             "hidden"),
    ("runs",         "enter",                    "open",            "Open",             "hidden"),
    ("runs",         "n",                        "new",             "New",              ""),
    ("runs",         "space",                    "mark",            "Mark",             "display=spc"),
    ("runs",         "c",                        "compare",         "Compare",          ""),
    ("runs",         "w",                        "sweep",           "Sweep",            ""),
    ("runs",         "t",                        "tryit",           "Try",              ""),
    ("runs",         "e",                        "export",          "Export",           ""),
    ("runs",         "s",                        "stop",            "Stop",             ""),
    ("runs",         "u",                        "resume",          "Resume",           ""),
    ("runs",         "g",                        "start_queue",     "Go",               ""),
    ("runs",         "shift+up",                 "move(-1)",        "Move",             "display=⇧↑↓"),
    ("runs",         "shift+down",               "move(1)",         "Move",             "hidden"),
    ("runs",         "d",                        "delete",          "Delete",           ""),
    ("runs",         "r",                        "rescan",          "Refresh",          "hidden"),
    ("compare",      "escape,q",                 "close",           "Close",            ""),
    ("compare",      "enter",                    "open",            "Open",             ""),
    ("compare",      "o",                        "sort",            "Sort",             ""),
    ("compare",      "O",                        "reverse",         "Reverse",          "hidden"),
    ("compare",      "t",                        "tryit",           "Try",              ""),
    ("compare",      "e",                        "export",          "Export",           ""),
    ("chat",         "ctrl+l",                   "clear",           "Clear",            ""),
    ("chat",         "ctrl+s",                   "save",            "Save as example",  ""),
    ("chat",         "ctrl+x",                   "stop",            "Stop answer",      "hidden"),
    ("chat",         "escape",                   "back",            "Back",             ""),
    ("try_it",       "ctrl+r",                   "predict",         "Predict",          "priority"),
    ("try_it",       "ctrl+l",                   "clear",           "Clear",            ""),
    ("try_it",       "escape",                   "back",            "Back",             ""),
    ("export",       "escape",                   "close",           "Close",            ""),
    ("file_picker",  "escape",                   "cancel",          "Cancel",           ""),
    ("file_picker",  "backspace",                "up",              "Parent folder",    ""),
    ("file_picker",  "tilde",                    "home",            "Home",             ""),
    ("file_picker",  "minus",                    "last",            "Last folder",      ""),
    ("file_picker",  "slash",                    "type_path",       "Type a path",      ""),
    ("path_prompt",  "escape",                   "cancel",          "Cancel",           ""),
    ("confirm",      "y",                        "answer(True)",    "Yes",              ""),
    ("confirm",      "n,escape",                 "answer(False)",   "No",               ""),
]
# fmt: on


def keys(screen: str) -> list[Binding]:
    """The bindings of one screen, in footer order."""
    return [_binding(*row[1:]) for row in KEYS if row[0] == screen]


def _binding(key: str, action: str, description: str, flags: str) -> Binding:
    words = flags.split()
    display = next(
        (word.removeprefix("display=") for word in words if word.startswith("display=")), None
    )
    return Binding(
        key,
        action,
        description,
        show="hidden" not in words,
        priority="priority" in words,
        key_display=display,
    )
