package lab

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/rocebed/rocebed/testbed/scenario"
	"golang.org/x/sys/unix"
)

// The state directory holds what `down` acts on, as root, later: whoever can change a file in
// it can make root delete links and write sysctls. So rocebed trusts it only if nobody but
// root could have changed it:
//
//   - the path to it is walked from / one component at a time; a symlink on the way is
//     followed only if root (or the user rocebed runs as) owns it;
//   - every directory on the way is owned by root (or that user), and one that others may
//     write to must be sticky, as /tmp is, so nobody else can rename what is in it;
//   - the state directory, each lab's directory in it and every file rocebed opens there are
//     owned by root (or that user) and writable by nobody else; files are opened relative to
//     their directory, never through a symlink, and must be regular files with one link.
//
// Anything else is refused before a byte is read or written (ErrUntrusted), so a lock planted
// as a symlink, a journal swapped by another user or a state directory that is world-writable
// changes nothing.

// ErrUntrusted means a state path could have been changed by someone other than root.
var ErrUntrusted = errors.New("state directory is not trusted")

// ErrBadName means a lab name that cannot name a lab directory.
var ErrBadName = errors.New("bad lab name")

// maxSymlinks bounds the symlinks followed on the way to a state directory (as the kernel does).
const maxSymlinks = 40

// trustedOwner reports whether uid may own a state path: root, or the user rocebed runs as.
func trustedOwner(uid uint32) bool { return uid == 0 || int(uid) == os.Geteuid() }

func untrusted(path, format string, args ...any) error {
	return fmt.Errorf("state directory %s: %s: %w; rocebed keeps there what `down` will undo as root, so only root may be able to change it (use the default /run/rocebed, or a directory that root owns and only root can write)",
		path, fmt.Sprintf(format, args...), ErrUntrusted)
}

// checkDir checks a directory on the way to the state directory (last=false), or the state
// or lab directory itself (last=true).
func checkDir(fd int, stateDir, shown string, last bool) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("state directory %s: stat %s: %w", stateDir, shown, err)
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return untrusted(stateDir, "%s is not a directory", shown)
	case !trustedOwner(st.Uid):
		return untrusted(stateDir, "%s is owned by uid %d", shown, st.Uid)
	case st.Mode&0o022 != 0 && last:
		return untrusted(stateDir, "%s is writable by others (mode %04o)", shown, st.Mode&0o7777)
	case st.Mode&0o022 != 0 && st.Mode&unix.S_ISVTX == 0:
		return untrusted(stateDir, "%s is writable by others (mode %04o) and not sticky", shown, st.Mode&0o7777)
	}
	return nil
}

// openStateDir opens the state directory (an O_PATH descriptor) after checking the whole path
// to it (see above). With create it makes what is missing (mode 0755); without, a missing
// directory is an error wrapping fs.ErrNotExist.
func openStateDir(path string, create bool) (int, error) {
	if path == "" {
		path = DefaultStateDir
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return -1, fmt.Errorf("state directory %s: %w", path, err)
	}
	root, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open /: %w", err)
	}
	if err := checkDir(root, path, "/", false); err != nil {
		unix.Close(root)
		return -1, err
	}
	// stack holds the descriptors of the directories walked so far, for "..".
	stack := []int{root}
	names := []string{""}
	closeAll := func() {
		for _, fd := range stack {
			unix.Close(fd)
		}
	}
	todo := splitPath(abs)
	links := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		cur := stack[len(stack)-1]
		shown := strings.Join(append(names[1:len(names):len(names)], c), "/")
		shown = "/" + shown
		switch c {
		case ".":
			continue
		case "..":
			if len(stack) > 1 {
				unix.Close(cur)
				stack, names = stack[:len(stack)-1], names[:len(names)-1]
			}
			continue
		}
		var st unix.Stat_t
		err := unix.Fstatat(cur, c, &st, unix.AT_SYMLINK_NOFOLLOW)
		if errors.Is(err, unix.ENOENT) && create {
			if err := unix.Mkdirat(cur, c, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
				closeAll()
				return -1, fmt.Errorf("create state directory %s: %w: choose another state directory", shown, err)
			}
			err = unix.Fstatat(cur, c, &st, unix.AT_SYMLINK_NOFOLLOW)
		}
		if err != nil {
			closeAll()
			if errors.Is(err, unix.ENOENT) {
				return -1, fmt.Errorf("state directory %s: %s: %w", path, shown, fs.ErrNotExist)
			}
			return -1, fmt.Errorf("state directory %s: %s: %w", path, shown, err)
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			if !trustedOwner(st.Uid) {
				closeAll()
				return -1, untrusted(path, "%s is a symlink owned by uid %d", shown, st.Uid)
			}
			if links++; links > maxSymlinks {
				closeAll()
				return -1, fmt.Errorf("state directory %s: %w", path, unix.ELOOP)
			}
			target, err := readlinkat(cur, c)
			if err != nil {
				closeAll()
				return -1, fmt.Errorf("state directory %s: read symlink %s: %w", path, shown, err)
			}
			if strings.HasPrefix(target, "/") {
				for _, fd := range stack[1:] {
					unix.Close(fd)
				}
				stack, names = stack[:1], names[:1]
			}
			todo = append(splitPath(target), todo...)
			continue
		}
		fd, err := unix.Openat(cur, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			closeAll()
			return -1, fmt.Errorf("state directory %s: open %s: %w", path, shown, err)
		}
		stack, names = append(stack, fd), append(names, c)
		if err := checkDir(fd, path, shown, false); err != nil {
			closeAll()
			return -1, err
		}
	}
	last := stack[len(stack)-1]
	if err := checkDir(last, path, "it", true); err != nil {
		closeAll()
		return -1, err
	}
	for _, fd := range stack[:len(stack)-1] {
		unix.Close(fd)
	}
	return last, nil
}

func splitPath(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		if c != "" {
			out = append(out, c)
		}
	}
	return out
}

func readlinkat(dirfd int, name string) (string, error) {
	buf := make([]byte, 4096)
	n, err := unix.Readlinkat(dirfd, name, buf)
	if err != nil {
		return "", err
	}
	if n == len(buf) {
		return "", unix.ENAMETOOLONG
	}
	return string(buf[:n]), nil
}

// checkLabName refuses a lab name that could not have come from a valid scenario: it names a
// directory under the state directory, so "..", "/" and the like must never reach a path.
func checkLabName(lab string) error {
	if msg := scenario.LabNameProblem(lab); msg != "" {
		return fmt.Errorf("%s: %w", msg, ErrBadName)
	}
	return nil
}

// openLabDir opens the lab's directory in the state directory sd (O_PATH), checked like the
// state directory itself; with create it is made if missing.
func openLabDir(sd int, stateDir, lab string, create bool) (int, error) {
	if err := checkLabName(lab); err != nil {
		return -1, err
	}
	if create {
		if err := unix.Mkdirat(sd, lab, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
			return -1, fmt.Errorf("create lab directory %s: %w", Dir(stateDir, lab), err)
		}
	}
	fd, err := unix.Openat(sd, lab, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	switch {
	case errors.Is(err, unix.ENOENT):
		return -1, fmt.Errorf("lab directory %s: %w", Dir(stateDir, lab), fs.ErrNotExist)
	case errors.Is(err, unix.ELOOP), errors.Is(err, unix.ENOTDIR):
		return -1, untrusted(stateDir, "%s is not a directory (a symlink?)", lab)
	case err != nil:
		return -1, fmt.Errorf("open lab directory %s: %w", Dir(stateDir, lab), err)
	}
	if err := checkDir(fd, stateDir, lab, true); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// openStateFile opens name in the lab directory dir without following a symlink, and checks
// that it is a regular file with one link, owned by root (or this user) and writable by
// nobody else.
func openStateFile(dir int, stateDir, lab, name string, flags int, perm uint32) (*os.File, error) {
	shown := filepath.Join(Dir(stateDir, lab), name)
	fd, err := unix.Openat(dir, name, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, perm)
	switch {
	case errors.Is(err, unix.ENOENT):
		return nil, fmt.Errorf("%s: %w", shown, fs.ErrNotExist)
	case errors.Is(err, unix.ELOOP):
		return nil, untrusted(stateDir, "%s is a symlink", filepath.Join(lab, name))
	case err != nil:
		return nil, fmt.Errorf("open %s: %w", shown, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("stat %s: %w", shown, err)
	}
	var bad error
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		bad = untrusted(stateDir, "%s is not a regular file", filepath.Join(lab, name))
	case !trustedOwner(st.Uid):
		bad = untrusted(stateDir, "%s is owned by uid %d", filepath.Join(lab, name), st.Uid)
	case st.Mode&0o022 != 0:
		bad = untrusted(stateDir, "%s is writable by others (mode %04o)", filepath.Join(lab, name), st.Mode&0o7777)
	case st.Nlink != 1:
		bad = untrusted(stateDir, "%s has %d links", filepath.Join(lab, name), st.Nlink)
	}
	if bad != nil {
		unix.Close(fd)
		return nil, bad
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), shown), nil
}

// sameFile reports whether f is still the file called name in dir.
func sameFile(f *os.File, dir int, name string) bool {
	var a, b unix.Stat_t
	if unix.Fstat(int(f.Fd()), &a) != nil || unix.Fstatat(dir, name, &b, unix.AT_SYMLINK_NOFOLLOW) != nil {
		return false
	}
	return a.Dev == b.Dev && a.Ino == b.Ino
}

// sameDir reports whether the descriptor fd is still the directory called name in dir.
func sameDir(fd, dir int, name string) bool {
	var a, b unix.Stat_t
	if unix.Fstat(fd, &a) != nil || unix.Fstatat(dir, name, &b, unix.AT_SYMLINK_NOFOLLOW) != nil {
		return false
	}
	return a.Dev == b.Dev && a.Ino == b.Ino
}

// syncDir makes the directory entries of dir (an O_PATH descriptor) durable.
func syncDir(dir int) {
	fd, err := unix.Openat(dir, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	_ = unix.Fsync(fd)
	unix.Close(fd)
}
