package verbs

import "unsafe"

type unsafePointer = unsafe.Pointer

// fakeHandle makes a non-nil handle that is never dereferenced (lifetime tests only).
func fakeHandle(i int) unsafe.Pointer { return unsafe.Pointer(&[1]int{i}) }
