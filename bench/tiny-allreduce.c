// Latency of the per-step stop agreement: MPI_Allreduce (MAX) of one int32, as ddptrain's
// Communicator.allReduceMax does after every step. Build and run (BENCHMARKS.md, "Graceful stop"):
//   mpicc -O2 -o /tmp/tiny-allreduce bench/tiny-allreduce.c && cluster/ddprun -n 4 /tmp/tiny-allreduce
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    const int warmup = 200, count = 5000;
    int32_t flag = 0;
    for (int i = 0; i < warmup; i++) MPI_Allreduce(MPI_IN_PLACE, &flag, 1, MPI_INT32_T, MPI_MAX, MPI_COMM_WORLD);
    MPI_Barrier(MPI_COMM_WORLD);
    double start = MPI_Wtime();
    for (int i = 0; i < count; i++) MPI_Allreduce(MPI_IN_PLACE, &flag, 1, MPI_INT32_T, MPI_MAX, MPI_COMM_WORLD);
    double seconds = MPI_Wtime() - start;
    if (rank == 0) printf("4-byte MPI_Allreduce (MAX): %.1f us each, mean over %d\n", 1e6 * seconds / count, count);
    MPI_Finalize();
    return 0;
}
