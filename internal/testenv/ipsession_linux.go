package testenv

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
)

// ipSession is one long-running `ip -force -batch -` that runs a dump's commands one at a
// time. Starting `ip` is most of what a dump costs under TCG — about 70 ms a run in the guest
// (ld.so and the exec: `perf` put the dumps' `ip` processes at a third of a lab test's CPU),
// against a few ms for the commands — and a test dumps a namespace many times. iproute2
// flushes its output after each batch command, so a command's output ends where a known
// error does: the end marker, a line naming an object ip does not have ("Object ... is
// unknown"). It touches no kernel state: `link show dev NOSUCH`, the first marker, made the
// kernel run modprobe for "netdev-NOSUCH" on every dump — 14% of a lab test's CPU in the guest.
type ipSession struct {
	args   []string // global options, as in the section heads
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	pipe   *os.File      // the read end of ip's stdout and stderr
	out    *bufio.Reader // reads pipe: what ip wrote, in its order
	line   int           // batch lines sent, for "Command failed -:N"
	broken error
}

// ipEndObject is no object of ip's ("link", "route", ...).
const ipEndObject = "rocebed-dump-end"

var ipEndLine = fmt.Sprintf("Object %q is unknown, try \"ip help\".", ipEndObject)

func startIPSession(args []string) (*ipSession, error) {
	cmd := exec.Command("ip", append(append([]string{}, args...), "-force", "-batch", "-")...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("start ip %s: %w", strings.Join(args, " "), err)
	}
	w.Close() // ip holds the write end now: its exit is our EOF
	return &ipSession{args: args, cmd: cmd, stdin: stdin, pipe: r, out: bufio.NewReader(r)}, nil
}

// run sends one batch command and returns what ip printed for it. A command that failed
// ("Command failed -:N" before the marker) is an error, as it was for a one-shot `ip -batch`.
func (s *ipSession) run(command string) (string, error) {
	if s.broken != nil {
		return "", s.broken
	}
	s.line += 2
	if _, err := io.WriteString(s.stdin, command+"\n"+ipEndObject+"\n"); err != nil {
		s.broken = fmt.Errorf("ip %s: %s: %w", strings.Join(s.args, " "), command, err)
		return "", s.broken
	}
	var b strings.Builder
	failed := fmt.Sprintf("Command failed -:%d", s.line-1)
	for {
		l, err := s.out.ReadString('\n')
		if err != nil {
			s.broken = fmt.Errorf("ip %s: %s: ip stopped (%w) after printing %q", strings.Join(s.args, " "), command, err, b.String()+l)
			return "", s.broken
		}
		if strings.TrimSuffix(l, "\n") == ipEndLine {
			break
		}
		b.WriteString(l)
	}
	// The marker's own "Command failed" line follows it.
	if l, err := s.out.ReadString('\n'); err != nil || !strings.HasPrefix(l, "Command failed -:") {
		s.broken = fmt.Errorf("ip %s: unexpected output after the end marker: %q (%v)", strings.Join(s.args, " "), l, err)
		return "", s.broken
	}
	if strings.Contains(b.String(), failed) {
		return "", fmt.Errorf("ip %s: %s failed: %s", strings.Join(s.args, " "), command, b.String())
	}
	return b.String(), nil
}

// close ends ip (EOF on its input) and waits for it. Its exit status is 1 whatever the
// dumps did: every end marker is a failed command.
func (s *ipSession) close() error {
	s.stdin.Close()
	_, _ = io.Copy(io.Discard, s.out)
	s.pipe.Close()
	if err := s.cmd.Wait(); err != nil && !errors.As(err, new(*exec.ExitError)) {
		return err
	}
	return nil
}

// ipSessions are a namespace's ip sessions, one per set of global options, started on first use.
type ipSessions struct {
	mu       sync.Mutex
	sessions map[string]*ipSession
	names    map[string]string // ifindex → name in the last `link show`
}

// linkHead is a `link show` line that starts a link: "7: vA@vB: <...".
var linkHead = regexp.MustCompile(`^(\d+): ([^:@ ]+)[@:]`)

// renamed records the links that `link show` printed and says whether one that was there
// last time now has another name. iproute2 remembers each ifindex's name the first time it
// prints one and never asks again in that process, so after a rename a session would print
// the old name in routes, addresses and neighbours: its sessions must start anew (seen with
// iproute2 6.1: `link set va name vx`, and `route show` went on saying "dev va").
func (ss *ipSessions) renamed(linkShow string) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	names := map[string]string{}
	changed := false
	for _, l := range strings.Split(linkShow, "\n") {
		if m := linkHead.FindStringSubmatch(l); m != nil {
			names[m[1]] = m[2]
			if old, ok := ss.names[m[1]]; ok && old != m[2] {
				changed = true
			}
		}
	}
	ss.names = names
	return changed
}

func (ss *ipSessions) run(args []string, command string) (string, error) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	key := strings.Join(args, " ")
	s := ss.sessions[key]
	if s == nil {
		var err error
		if s, err = startIPSession(args); err != nil {
			return "", err
		}
		if ss.sessions == nil {
			ss.sessions = map[string]*ipSession{}
		}
		ss.sessions[key] = s
	}
	out, err := s.run(command)
	if s.broken != nil {
		// ip exits on some errors (a bad argument is fatal even with -force): the next
		// command gets a new session.
		_ = s.close()
		delete(ss.sessions, key)
	}
	return out, err
}

// closeAll ends every session; the namespace's cleanup calls it before deleting the namespace
// (a running ip holds it).
func (ss *ipSessions) closeAll() error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	var errs []error
	for key, s := range ss.sessions {
		if err := s.close(); err != nil {
			errs = append(errs, fmt.Errorf("ip %s: %w", key, err))
		}
	}
	ss.sessions = nil
	return errors.Join(errs...)
}
