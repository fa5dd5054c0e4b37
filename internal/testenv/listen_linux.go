package testenv

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// WaitTCPListen returns once a TCP socket in the calling thread's namespace listens on port
// (as /proc/thread-self/net/tcp and tcp6 show it: /proc/net is the namespace of the process's
// main thread, which a test that entered a namespace on it may have left elsewhere), or an error when ctx ends or exited reports that the
// process that should listen has gone. Outside tools such as perftest and the pingpong
// examples exchange their QP numbers over such a socket: a client started before it exists
// fails at once.
func WaitTCPListen(ctx context.Context, port int, exited <-chan struct{}) error {
	for {
		ok, err := tcpListening(port)
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("nothing listens on TCP port %d: %w", port, ctx.Err())
		case <-exited:
			return fmt.Errorf("the server exited before it listened on TCP port %d", port)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// tcpListening reports whether tcp or tcp6 has a socket in state LISTEN (0A) on port.
func tcpListening(port int) (bool, error) {
	for _, f := range []string{"/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"} {
		file, err := os.Open(f)
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			return false, err
		}
		sc := bufio.NewScanner(file)
		sc.Scan() // header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 4 || fields[3] != "0A" {
				continue
			}
			i := strings.LastIndexByte(fields[1], ':')
			if p, err := strconv.ParseUint(fields[1][i+1:], 16, 16); err == nil && int(p) == port {
				file.Close()
				return true, nil
			}
		}
		file.Close()
		if err := sc.Err(); err != nil {
			return false, err
		}
	}
	return false, nil
}
