/* Placeholder until the CLI lands (issue 7). */
#include <stdio.h>

#include "cli.h"

int cli_main(int argc, char **argv)
{
    fprintf(stderr, "pbxguard: CLI pending\n");
    return 1;
}
