"""The Faust app, built from the environment: ``faust -A pipeline.app worker -l info``
(add ``-L uvloop`` for the faster loop).

Faust's command line imports a module-level app, so this is the one place a
component is built at import time; everything it needs comes from
``Settings.from_env()``.
"""

from __future__ import annotations

from pipeline.worker import create_app
from runtime.settings import Settings

app = create_app(Settings.from_env())

if __name__ == "__main__":
    app.main()
