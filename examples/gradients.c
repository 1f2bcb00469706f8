/*
 * gradients.c -- both mpsnorm gradient kernels on buffers this program owns.
 *
 * Build against an installed mpsnorm:
 *   cc examples/gradients.c $(python -m mpsnorm config --cflags --libs) -o gradients
 */
#include <stdio.h>
#include <stdlib.h>

#include "mpsnorm.h"

enum { N = 2, C = 3, H = 16, W = 16, COUNT = N * C * H * W };

/* A dense NCHW float32 descriptor of one of this program's arrays. */
static mpsnorm_tensor dense(float *data)
{
    mpsnorm_tensor tensor = {data, MPSNORM_FLOAT32, {N, C, H, W}, {C * H * W, H * W, W, 1}};
    return tensor;
}

static int report_failure(const char *what, int status, const mpsnorm_report *report)
{
    fprintf(stderr, "%s failed: %s (%s)\n", what, mpsnorm_status_string(status), report->message);
    return 1;
}

int main(void)
{
    static float x[COUNT], dy[COUNT], dx[COUNT];
    for (int i = 0; i < COUNT; i++) {
        x[i] = (float)((i * 37) % 101) / 101.0f;  /* a deterministic texture */
        dy[i] = (float)((i * 53) % 89) / 89.0f - 0.5f;
    }
    mpsnorm_tensor x_tensor = dense(x), dy_tensor = dense(dy), dx_tensor = dense(dx);
    mpsnorm_report report;

    mpsnorm_engine *engine = NULL;
    int status = mpsnorm_engine_create(MPSNORM_BACKEND_AUTO, &engine);
    if (status != MPSNORM_OK) {
        fprintf(stderr, "engine: %s\n", mpsnorm_status_string(status));
        return 1;
    }
    printf("mpsnorm %s, backend %s\n", mpsnorm_version(),
           mpsnorm_backend_name(mpsnorm_engine_backend(engine)));

    mpsnorm_lcn_params lcn;
    mpsnorm_lcn_params_init(&lcn, 5, 5);
    lcn.alpha = 1.0f;
    status = mpsnorm_lcn_gradient(engine, &lcn, &dy_tensor, &x_tensor, &dx_tensor, &report);
    if (status != MPSNORM_OK)
        return report_failure("LCN gradient", status, &report);
    double sum = 0.0;
    for (int i = 0; i < COUNT; i++)
        sum += dx[i];
    printf("LCN gradient (5x5, alpha 1): sum(dx) = %.6f, dx[0] = %.6f\n", sum, dx[0]);

    float dgamma[C], dbeta[C];
    mpsnorm_vector dgamma_vector = {dgamma, MPSNORM_FLOAT32, C, 1};
    mpsnorm_vector dbeta_vector = {dbeta, MPSNORM_FLOAT32, C, 1};
    mpsnorm_inorm_params inorm;
    mpsnorm_inorm_params_init(&inorm, C);
    status = mpsnorm_inorm_gradient(engine, &inorm, &dy_tensor, &x_tensor, &dx_tensor,
                                    &dgamma_vector, &dbeta_vector, &report);
    if (status != MPSNORM_OK)
        return report_failure("instance-norm gradient", status, &report);
    printf("instance-norm gradient: dx[0] = %.6f\n", dx[0]);
    for (int c = 0; c < C; c++)
        printf("  channel %d: dgamma = %.6f, dbeta = %.6f\n", c, dgamma[c], dbeta[c]);

    mpsnorm_engine_free(engine);
    return 0;
}
