try:
    from batchrun.cli import main
except KeyboardInterrupt:  # Ctrl-C during start-up: the documented exit code, not a traceback
    import sys

    print("batchrun: interrupted", file=sys.stderr)
    raise SystemExit(130) from None

raise SystemExit(main())
