/* Reference embedding lookup (one dequantized table row per token). */
#include "kernels/embedding.h"

void wd_embedding_ref(const struct wd_weight *table, const int32_t *ids, int64_t n, float *out)
{
    for (int64_t i = 0; i < n; i++)
        wd_weight_row_f32(table, ids[i], out + i * table->cols);
}
