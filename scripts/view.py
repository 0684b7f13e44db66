"""Open Gaussians in the browser: `python scripts/view.py PATH.ply|FOLDER [--port 8080]` (see facelift/viewer.py)."""

from facelift.errors import exit_on_user_error
from facelift.viewer import main

if __name__ == "__main__":
    exit_on_user_error(main)()
