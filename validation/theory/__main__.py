"""``python -m validation.theory``: see :func:`validation.theory.suite.main`."""

from validation.theory.suite import main

if __name__ == "__main__":
    raise SystemExit(main())
