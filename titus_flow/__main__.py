"""``python -m titus_flow``: the same CLI as the ``titus-flow`` command."""

from titus_flow.cli import main

if __name__ == "__main__":
    main()
