package sweep

//go:generate go tool bpf2go -cc clang-14 -target bpfel -type sweep_stats sweeper ../../bpf/sweep.bpf.c -- -O2 -g -Wall -Werror -mcpu=v3 -I/usr/include/x86_64-linux-gnu
