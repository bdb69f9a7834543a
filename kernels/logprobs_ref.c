/* Reference top-k logprobs: one pass keeping the k best in a small min-heap. */
#include "kernels/logprobs.h"

#include <math.h>

int wd_logits_finite_ref(const float *logits, int vocab)
{
    /* Summing x * 0 as we go lets a NaN or Inf anywhere reach the end (Inf * 0 is NaN):
     * cheaper than a branch per element. Eight independent partial sums, not one running
     * sum: the answer is the same (every finite term is 0), but one chain of dependent adds
     * over a 129k-256k vocabulary was ~0.15 ms per row on the serial sampling path, and
     * eight lanes vectorize. */
    float part[8] = {0};
    int i = 0;
    for (; i + 8 <= vocab; i += 8)
        for (int j = 0; j < 8; j++)
            part[j] += logits[i + j] * 0.0f;
    float s = 0.0f;
    for (int j = 0; j < 8; j++)
        s += part[j];
    for (; i < vocab; i++)
        s += logits[i] * 0.0f;
    return s == 0.0f;
}

double wd_logsumexp_ref(const float *logits, int vocab)
{
    float m = logits[0];
    for (int i = 1; i < vocab; i++)
        m = logits[i] > m ? logits[i] : m;
    double s = 0.0;
    for (int i = 0; i < vocab; i++)
        s += exp((double)logits[i] - m);
    return m + log(s);
}

/* Heap order: the root is the WORST of the kept tokens (lowest logit, then highest id). */
static int worse(const float *x, int32_t a, int32_t b)
{
    return x[a] < x[b] || (x[a] == x[b] && a > b);
}

static void sift_down(int32_t *h, int n, int i, const float *x)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && worse(x, h[l], h[w]))
            w = l;
        if (r < n && worse(x, h[r], h[w]))
            w = r;
        if (w == i)
            return;
        int32_t t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

void wd_logprobs_top_ref(const float *logits, int vocab, int k, int32_t *ids, float *lps)
{
    if (k <= 0)
        return;
    if (k > vocab)
        k = vocab;
    int n = 0;
    for (int32_t i = 0; i < vocab; i++) {
        if (n < k) {
            ids[n++] = i;
            if (n == k)
                for (int j = k / 2 - 1; j >= 0; j--)
                    sift_down(ids, k, j, logits);
            continue;
        }
        if (worse(logits, ids[0], i)) {
            ids[0] = i;
            sift_down(ids, k, 0, logits);
        }
    }
    /* Heap-sort in place: pop the worst to the back, so ids ends best first. */
    for (int end = k - 1; end > 0; end--) {
        int32_t t = ids[0];
        ids[0] = ids[end];
        ids[end] = t;
        sift_down(ids, end, 0, logits);
    }
    double lse = wd_logsumexp_ref(logits, vocab);
    for (int j = 0; j < k; j++)
        lps[j] = (float)((double)logits[ids[j]] - lse);
}
