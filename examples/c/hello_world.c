// The seed's C guest: `main` greets; `Add` and `AddUser` are exported for callers.
// Built twice (see scripts/images.sh): as a command (`_start` runs main) and as a reactor
// (`_initialize`, then any export), with malloc and free exported for string arguments.
#include <stdio.h>

__attribute__((export_name("Add")))
int Add(int i, int j) {
    return i + j;
}

__attribute__((export_name("AddUser")))
int AddUser(char* nameData, int nameLen, int age) {
    if (!nameData) {
        return 0;
    }
    printf("name:%s, len:%d, age:%d\n", nameData, nameLen, age);
    // A reactor has no exit to flush stdio: flush before returning to the host.
    fflush(stdout);
    return 1;
}

int main() {
    printf("hello, world!\n");
    return 0;
}
