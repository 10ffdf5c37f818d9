/* pbxguardd: the daemon's lifecycle (options, config, lock, loop, signals, readiness). */
#pragma once

int daemon_main(int argc, char **argv);
