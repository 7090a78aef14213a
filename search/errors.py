"""The one exception type for problems a user can cause and fix."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; the command line prints it as one line and exits 2.

    The message names the problem and the fix, e.g.
    ``"data/mnist.npz is corrupt (bad zip file); delete it and run `make data`"``.
    """
