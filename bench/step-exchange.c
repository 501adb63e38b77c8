// Latency of ddptrain's per-step exchange (StepExchange): an MPI_Allgather of 2 + B/W doubles per
// rank (stop signal, correct answers, the rank's sample losses), against the 4-byte MPI_Allreduce
// (MAX) it replaced, alternating in the same run. Build and run (BENCHMARKS.md, "Graceful stop"):
//   mpicc -O2 -o /tmp/step-exchange bench/step-exchange.c && cluster/ddprun -n 4 /tmp/step-exchange 64
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    const int globalBatch = argc > 1 ? atoi(argv[1]) : 64;
    const int row = 2 + globalBatch / size, rounds = 5, count = 1000;
    double *mine = calloc(row, sizeof(double)), *all = calloc((size_t)row * size, sizeof(double));
    int32_t flag = 0;
    double gather = 0, reduce = 0;
    for (int round = 0; round <= rounds; round++) {  // round 0 warms up
        MPI_Barrier(MPI_COMM_WORLD);
        double start = MPI_Wtime();
        for (int i = 0; i < count; i++) MPI_Allgather(mine, row, MPI_DOUBLE, all, row, MPI_DOUBLE, MPI_COMM_WORLD);
        double middle = MPI_Wtime();
        for (int i = 0; i < count; i++) MPI_Allreduce(MPI_IN_PLACE, &flag, 1, MPI_INT32_T, MPI_MAX, MPI_COMM_WORLD);
        double end = MPI_Wtime();
        if (round > 0) { gather += middle - start; reduce += end - middle; }
    }
    if (rank == 0)
        printf("%d ranks, global batch %d: all-gather of %d doubles per rank %.1f us, 4-byte all-reduce (MAX) %.1f us (means over %d each)\n",
               size, globalBatch, row, 1e6 * gather / (rounds * count), 1e6 * reduce / (rounds * count), rounds * count);
    free(mine);
    free(all);
    MPI_Finalize();
    return 0;
}
