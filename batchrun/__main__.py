import signal

# Hold Ctrl-C and SIGTERM back from the first line on: main() delivers them once its handlers are
# up (exit 130/143, one line). Without this, a SIGINT landing between the imports and main()'s own
# hold-back (the call itself) escaped as a KeyboardInterrupt traceback and exit -2, and a SIGTERM
# killed the process outright (-15) before the run could stop gracefully.
if hasattr(signal, "pthread_sigmask"):
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})

from batchrun.cli import main  # noqa: E402 - after the signal mask on purpose

raise SystemExit(main())
