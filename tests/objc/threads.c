/*
 * threads.c -- threads sharing one Metal engine, as a C program, for
 * ThreadSanitizer (which instruments whole programs: Python cannot load its
 * runtime here). Linked with the fake-Metal library's objects
 * (tests/objc/build.py build_program); run by tests/test_metal_fake.py.
 *
 *   threads [CALLS]
 *
 * 8 threads, CALLS calls each (default 200), alternate an LCN gradient and an
 * instance-norm gradient on one engine, each thread on its own inputs; every
 * result must equal, bit for bit, the one computed before the threads start.
 * Ends with "N passed, M failed".
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpsnorm.h"

enum { THREADS = 8, N = 2, C = 5, H = 9, W = 11, COUNT = N * C * H * W };

typedef struct work {
    float dy[COUNT], x[COUNT];
    float lcn_dx[COUNT];                        /* serial results */
    float inorm_dx[COUNT], dgamma[C], dbeta[C];
    int calls, mismatches, errors;
} work;

static mpsnorm_engine *engine;
static mpsnorm_lcn_params lcn;
static mpsnorm_inorm_params inorm;
static const float gamma_values[C] = {1.5f, -0.75f, 0.3f, 2.0f, 0.5f};

static mpsnorm_tensor dense(float *data)
{
    mpsnorm_tensor tensor = {data, MPSNORM_FLOAT32, {N, C, H, W}, {C * H * W, H * W, W, 1}};
    return tensor;
}

static mpsnorm_vector channels(float *data)
{
    mpsnorm_vector vector = {data, MPSNORM_FLOAT32, C, 1};
    return vector;
}

static int lcn_call(work *w, float *dx)
{
    mpsnorm_tensor dy = dense(w->dy), x = dense(w->x), out = dense(dx);
    mpsnorm_report report;
    int status = mpsnorm_lcn_gradient(engine, &lcn, &dy, &x, &out, &report);
    if (status != MPSNORM_OK || report.backend_used != MPSNORM_BACKEND_METAL) {
        fprintf(stderr, "LCN gradient: status %d: %s\n", status, report.message);
        return 0;
    }
    return 1;
}

static int inorm_call(work *w, float *dx, float *dgamma, float *dbeta)
{
    mpsnorm_tensor dy = dense(w->dy), x = dense(w->x), out = dense(dx);
    mpsnorm_vector g = channels(dgamma), b = channels(dbeta);
    mpsnorm_report report;
    int status = mpsnorm_inorm_gradient(engine, &inorm, &dy, &x, &out, &g, &b, &report);
    if (status != MPSNORM_OK || report.backend_used != MPSNORM_BACKEND_METAL) {
        fprintf(stderr, "instance norm gradient: status %d: %s\n", status, report.message);
        return 0;
    }
    return 1;
}

static void *run(void *argument)
{
    work *w = argument;
    float dx[COUNT], dgamma[C], dbeta[C];
    for (int call = 0; call < w->calls; call++) {
        if (call % 2 == 0) {
            if (!lcn_call(w, dx))
                w->errors++;
            else if (memcmp(dx, w->lcn_dx, sizeof dx) != 0)
                w->mismatches++;
        } else {
            if (!inorm_call(w, dx, dgamma, dbeta))
                w->errors++;
            else if (memcmp(dx, w->inorm_dx, sizeof dx) != 0 ||
                     memcmp(dgamma, w->dgamma, sizeof dgamma) != 0 ||
                     memcmp(dbeta, w->dbeta, sizeof dbeta) != 0)
                w->mismatches++;
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int calls = argc > 1 ? atoi(argv[1]) : 200;
    int passed = 0, failed = 0;
    if (mpsnorm_engine_create(MPSNORM_BACKEND_METAL, &engine) != MPSNORM_OK) {
        printf("no Metal engine\n0 passed, 1 failed\n");
        return 1;
    }
    mpsnorm_lcn_params_init(&lcn, 5, 5);
    lcn.alpha = 0.7f;
    lcn.beta = 0.75f;
    mpsnorm_inorm_params_init(&inorm, C);
    inorm.gamma = gamma_values;
    static work works[THREADS];
    unsigned seed = 12345u;
    for (int t = 0; t < THREADS; t++) {
        work *w = &works[t];
        for (int i = 0; i < COUNT; i++) {
            seed = seed * 1103515245u + 12345u;
            w->dy[i] = (float)((seed >> 8) & 0xffff) / 65536.0f - 0.5f;
            seed = seed * 1103515245u + 12345u;
            w->x[i] = (float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f;
        }
        w->calls = calls;
        if (!lcn_call(w, w->lcn_dx) || !inorm_call(w, w->inorm_dx, w->dgamma, w->dbeta)) {
            printf("serial calls failed\n0 passed, 1 failed\n");
            return 1;
        }
    }
    pthread_t threads[THREADS];
    for (int t = 0; t < THREADS; t++)
        if (pthread_create(&threads[t], NULL, run, &works[t]) != 0) {
            printf("pthread_create failed\n0 passed, 1 failed\n");
            return 1;
        }
    for (int t = 0; t < THREADS; t++) {
        pthread_join(threads[t], NULL);
        int ok = works[t].errors == 0 && works[t].mismatches == 0;
        printf("%s: thread %d: %d calls, %d errors, %d results unlike the serial ones\n",
               ok ? "ok  " : "FAIL", t, calls, works[t].errors, works[t].mismatches);
        passed += ok;
        failed += !ok;
    }
    mpsnorm_engine_free(engine);
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
