"""What the app remembers between launches: geometry, last configuration, recent files.

Backed by ``QSettings``. ``$EXPLORER_SETTINGS`` (an ``.ini`` path) redirects it, which
is how tests and screenshots keep the user's own settings untouched.
"""
from __future__ import annotations

import os
from typing import Optional

from PySide6.QtCore import QByteArray, QSettings

from explorer.core.config import RunConfig

MAX_RECENT = 8


def open_settings(path: Optional[str] = None) -> QSettings:
    """The settings store: ``path`` or ``$EXPLORER_SETTINGS`` as an .ini file, else the user's."""
    path = path or os.environ.get("EXPLORER_SETTINGS")
    if path:
        return QSettings(path, QSettings.IniFormat)
    return QSettings(QSettings.IniFormat, QSettings.UserScope, "diffusion-explorer", "diffusion-explorer")


class AppSettings:
    """Typed access to the few things stored; bad stored values read as absent."""

    def __init__(self, store: QSettings, read_only: bool = False) -> None:
        self.store = store
        self.read_only = read_only  # a screenshot run reads the user's settings but never writes them

    def _put(self, key: str, value: object) -> None:
        if not self.read_only:
            self.store.setValue(key, value)

    # ------------------------------------------------------------------ run state
    def config(self) -> Optional[RunConfig]:
        text = self.store.value("run/config", "")
        if not text:
            return None
        try:
            return RunConfig.from_json(str(text))
        except (ValueError, TypeError):
            return None

    def set_config(self, config: RunConfig) -> None:
        self._put("run/config", config.to_json())

    def denoiser(self) -> Optional[str]:
        value = self.store.value("run/denoiser", "")
        return str(value) if value else None

    def set_denoiser(self, spec: str) -> None:
        self._put("run/denoiser", spec)

    # ------------------------------------------------------------------ files
    def recent(self) -> list[str]:
        value = self.store.value("files/recent", [])
        if isinstance(value, str):
            value = [value] if value else []
        return [str(v) for v in (value or []) if v][:MAX_RECENT]

    def add_recent(self, path: str) -> list[str]:
        items = [path] + [p for p in self.recent() if p != path]
        self._put("files/recent", items[:MAX_RECENT])
        return items[:MAX_RECENT]

    def remove_recent(self, path: str) -> list[str]:
        items = [p for p in self.recent() if p != path]
        self._put("files/recent", items)
        return items

    def last_folder(self) -> str:
        return str(self.store.value("files/folder", "") or "")

    def set_last_folder(self, folder: str) -> None:
        self._put("files/folder", folder)

    # ------------------------------------------------------------------ window
    def geometry(self) -> Optional[QByteArray]:
        value = self.store.value("window/geometry")
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None

    def set_geometry(self, data: QByteArray) -> None:
        self._put("window/geometry", data)

    def splitters(self) -> dict[str, QByteArray]:
        out = {}
        for key in self.store.allKeys():
            if key.startswith("splitters/"):
                value = self.store.value(key)
                if isinstance(value, QByteArray):
                    out[key.split("/", 1)[1]] = value
        return out

    def set_splitter(self, name: str, data: QByteArray) -> None:
        self._put(f"splitters/{name}", data)

    def view_value(self, key: str, default: str) -> str:
        return str(self.store.value(f"view/{key}", default) or default)

    def set_view_value(self, key: str, value: str) -> None:
        self._put(f"view/{key}", value)

    def reset(self) -> None:
        """Forget everything (the menu's Reset)."""
        if self.read_only:
            return
        self.store.clear()
        self.store.sync()

    def sync(self) -> None:
        if not self.read_only:
            self.store.sync()
