/**
 * Python for tests that probe the network from inside a sandbox (the sandbox image has python3).
 */

/** Defines `connect(host, port, timeout)`: `'connected'`, `'timeout'` or `'errno-<n>'`, one TCP connect each. */
export const PY_CONNECT = `
import socket
def connect(host, port, timeout):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((host, int(port)))
        return 'connected'
    except socket.timeout:
        return 'timeout'
    except OSError as e:
        return 'errno-%d' % e.errno
    finally:
        s.close()
`;
