from __future__ import annotations

from pipecored.cli import main

raise SystemExit(main())
