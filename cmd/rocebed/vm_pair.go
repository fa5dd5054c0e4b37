package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sync"

	"github.com/rocebed/rocebed/vm"
	"github.com/spf13/cobra"
)

// pairPort is where host a's rocebed listens for host b's in a pair of guests (their own
// management network, so no port on this machine is taken).
const pairPort = 7471

// pairExecOptions turns the guest flags into the two guests' options of a pair: each with the
// flags' image, bounds and environment; one vCPU each unless --smp says otherwise (two guests
// share this machine's cores). Their NICs come from vm.ExecPair.
func (f *vmFlags) pairExecOptions(cmd *cobra.Command) (a, b vm.ExecOptions, err error) {
	if f.nics != 0 {
		return a, b, usageError(fmt.Errorf("--nics %d: a pair's guests get their NICs from the pair (eth0 management, eth1 the cable between them)", f.nics))
	}
	e, err := f.execOptions(cmd)
	if err != nil {
		return a, b, err
	}
	if !cmd.Flags().Changed("smp") {
		e.SMP = 1
	}
	a, b = e, e
	out, errw := cmd.OutOrStdout(), cmd.ErrOrStderr()
	var mu sync.Mutex
	a.Stdout, a.Stderr = &prefixWriter{mu: &mu, w: out, prefix: "a| "}, &prefixWriter{mu: &mu, w: errw, prefix: "a| "}
	b.Stdout, b.Stderr = &prefixWriter{mu: &mu, w: out, prefix: "b| "}, &prefixWriter{mu: &mu, w: errw, prefix: "b| "}
	if f.verbose {
		a.Console, b.Console = &prefixWriter{mu: &mu, w: errw, prefix: "a console| "}, &prefixWriter{mu: &mu, w: errw, prefix: "b console| "}
	}
	return a, b, nil
}

// pairExit turns a pair's outcome into rocebed's exit: guest a's status when it is not 0, else
// guest b's (vm.PairExitStatus), with each guest's failure named.
func pairExit(r vm.PairResult) error {
	code, ok := vm.PairExitStatus(r)
	var errs []error
	for _, g := range []struct {
		name string
		res  *vm.Result
		err  error
	}{{"a", r.A, r.ErrA}, {"b", r.B, r.ErrB}} {
		switch {
		case g.err != nil:
			errs = append(errs, fmt.Errorf("guest %s: %w", g.name, g.err))
		case g.res != nil && g.res.ExitCode != 0:
			errs = append(errs, fmt.Errorf("guest %s: command exited with status %d", g.name, g.res.ExitCode))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	err := errs[0]
	if len(errs) == 2 {
		err = fmt.Errorf("%w; %w", errs[0], errs[1])
	}
	if !ok {
		return err
	}
	return withExit(code, err)
}

// prefixWriter writes whole lines to w, each starting with prefix, so that two guests'
// output interleaves by line; mu is shared by the writers of one terminal.
type prefixWriter struct {
	mu     *sync.Mutex
	w      io.Writer
	prefix string
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			return len(b), nil
		}
		if _, err := fmt.Fprintf(p.w, "%s%s", p.prefix, p.buf[:i+1]); err != nil {
			return len(b), err
		}
		p.buf = p.buf[i+1:]
	}
}

// Flush writes a last line that has no newline.
func (p *prefixWriter) Flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.buf) > 0 {
		fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.buf)
		p.buf = nil
	}
}

// flushAll flushes the prefixed writers of a pair's options.
func flushAll(os ...vm.ExecOptions) {
	for _, o := range os {
		for _, w := range []io.Writer{o.Stdout, o.Stderr} {
			if p, ok := w.(*prefixWriter); ok {
				p.Flush()
			}
		}
	}
}

// pairJSON writes the two guests' JSON reports as one document {"a": ..., "b": ...}; a guest
// whose output is not JSON has it as a string.
func pairJSON(w io.Writer, a, b []byte) error {
	doc := map[string]any{}
	for k, v := range map[string][]byte{"a": a, "b": b} {
		if json.Valid(bytes.TrimSpace(v)) && len(bytes.TrimSpace(v)) > 0 {
			doc[k] = json.RawMessage(bytes.TrimSpace(v))
		} else {
			doc[k] = string(v)
		}
	}
	return writeJSON(w, doc)
}
