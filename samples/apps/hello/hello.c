/* The hello-static sample: a statically linked job that prints one line and exits 0. */
#include <stdio.h>

int main(void)
{
    puts("hello from trimcage");
    return 0;
}
