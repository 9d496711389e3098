"""`python -m musicgen_stem.app`: start the web app (the options of `musicgen-stem app`)."""

from .server import main

raise SystemExit(main())
