"""For crash tests: child processes that kill themselves (SIGKILL) right after the nth call of a real function.

A child script is ``KILL_AFTER`` followed by code that calls ``kill_after(owner, name, nth)`` and then does the
work; the test checks what a later run makes of the state the killed process left.
"""

KILL_AFTER = '''
import os, signal


def kill_after(owner, name, nth, static=False):
    """Wrap ``owner.name`` so that the process SIGKILLs itself right after its ``nth`` call returns."""
    real = getattr(owner, name)
    calls = [0]

    def wrapper(*args, **kwargs):
        result = real(*args, **kwargs)
        calls[0] += 1
        if calls[0] == nth:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(owner, name, staticmethod(wrapper) if static else wrapper)
'''
