# What `oxilink deploy` copies to a board's flash that the simulated boards need on their (RAM) flash too: the
# counter.fresh marker that lets a freshly deployed key start its message counter at 0, once
# (firmware/msgcounter.py, docs/format.md "Key material"). Secrets and certificates the simulators read from
# the provisioned folder directly. Not deployed to boards.

MARKER = "counter.fresh"


def copy_marker(secrets_dir, state_dir):
    """Copies <secrets_dir>/counter.fresh to <state_dir>/counter.fresh, as a deploy does; True if there was one."""
    try:
        with open(secrets_dir + "/" + MARKER) as f:
            text = f.read()
    except OSError:
        return False
    with open(state_dir + "/" + MARKER, "w") as f:
        f.write(text)
    return True
