import signal

# Hold Ctrl-C back from the first line on: main() delivers it once its handlers are up (exit 130,
# one line). Without this, a SIGINT landing between the imports and main()'s own hold-back (the
# call itself) escaped as a KeyboardInterrupt traceback and exit -2.
if hasattr(signal, "pthread_sigmask"):
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})

from batchrun.cli import main  # noqa: E402 - after the signal mask on purpose

raise SystemExit(main())
