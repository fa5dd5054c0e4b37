package vm

// rdtsc reads the time-stamp counter (RDTSC).
func rdtsc() uint64

const haveTSC = true
