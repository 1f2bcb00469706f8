/* params.c -- MPS's parameter defaults (checks are in validate.c). */
#include "mpsnorm.h"

int mpsnorm_lcn_params_init(mpsnorm_lcn_params *params, int64_t kernel_width, int64_t kernel_height)
{
    if (params == NULL)
        return MPSNORM_ERR_NULL_POINTER;
    params->kernel_width = kernel_width;
    params->kernel_height = kernel_height;
    /* MPSCNNLocalContrastNormalization's documented defaults (alpha 0 included). */
    params->alpha = 0.0f;
    params->beta = 0.5f;
    params->delta = 1.0f / 1024.0f;
    params->p0 = 1.0f;
    params->pm = 0.0f;
    params->ps = 1.0f;
    return mpsnorm_lcn_params_check(params, NULL);
}

int mpsnorm_inorm_params_init(mpsnorm_inorm_params *params, int64_t num_channels)
{
    if (params == NULL)
        return MPSNORM_ERR_NULL_POINTER;
    params->num_channels = num_channels;
    params->gamma = NULL;
    params->beta = NULL;
    params->epsilon = 1e-5f;
    return num_channels >= 1 ? MPSNORM_OK : MPSNORM_ERR_INVALID_PARAMETER;
}
