// The seed's Go guest for GOOS=wasip1: main greets; Add and AddUser are exported with
// //go:wasmexport. Built twice (see scripts/images.sh): as a command (`_start` runs main) and
// with -buildmode=c-shared as a reactor whose exports a host calls. Go has no C allocator, so
// the module exports malloc and free for hosts that pass strings, as the seed's hosts do.
package main

import (
	"fmt"
	"unsafe"
)

//go:wasmexport Add
func Add(a, b int32) int32 {
	return a + b
}

type User struct {
	Name string
	Age  int32
}

//go:wasmexport AddUser
func AddUser(nameData *byte, nameLen int32, age int32) bool {
	name := unsafe.String(nameData, nameLen)
	user := User{Name: name, Age: age}
	fmt.Printf("Add User:%v\n", user)
	return true
}

// live keeps host-allocated buffers reachable until the host frees them.
var live = map[uintptr][]byte{}

//go:wasmexport malloc
func malloc(size int32) unsafe.Pointer {
	buf := make([]byte, size)
	ptr := unsafe.Pointer(&buf[0])
	live[uintptr(ptr)] = buf
	return ptr
}

//go:wasmexport free
func free(ptr unsafe.Pointer) {
	delete(live, uintptr(ptr))
}

func main() {
	fmt.Println("Hello, WebAssembly!")
}
