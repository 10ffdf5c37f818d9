/* Placeholder until the lifecycle lands (issue 2). */
#include <stdio.h>

#include "daemon.h"

int daemon_main(int argc, char **argv)
{
    fprintf(stderr, "pbxguardd: lifecycle pending\n");
    return 1;
}
