namespace MedServe.Medical.Dicom;

/// <summary>
/// Resizes one plane of float samples the way PyTorch's <c>torch.nn.functional.interpolate</c> does on the CPU, in
/// float arithmetic and in its order, so a model gets the tensor it was trained on:
/// <list type="bullet">
/// <item><c>bilinear_antialias</c>: <c>mode="bilinear", align_corners=False, antialias=True</c> (PyTorch's
/// <c>_upsample_bilinear2d_aa</c>, the algorithm of PIL's <c>resample</c>): separable, width first, then height; for
/// output pixel <c>i</c> the centre is <c>scale * (i + 0.5)</c>, the triangle filter's support is <c>scale</c> input
/// pixels either side when downscaling (1 when upscaling), and the weights are normalised to sum to 1.</item>
/// <item><c>bilinear</c>: <c>mode="bilinear", align_corners=False</c>: the source position <c>max(scale * (i + 0.5) - 0.5, 0)</c>
/// between its two neighbours, so a strong downscale skips pixels (aliasing).</item>
/// </list>
/// An axis whose size does not change is copied, as PyTorch skips it.
/// </summary>
public static class ImageResize
{
    /// <summary>Resizes <paramref name="source"/> (<paramref name="height"/> x <paramref name="width"/>, row-major) into <paramref name="destination"/>.</summary>
    public static void Resize(ReadOnlySpan<float> source, int height, int width, Span<float> destination, int outHeight, int outWidth, string method)
    {
        if (source.Length < height * width || destination.Length < outHeight * outWidth)
        {
            throw new ArgumentException("buffer smaller than its plane");
        }
        if (height == outHeight && width == outWidth)
        {
            source[..(height * width)].CopyTo(destination);
            return;
        }
        if (method == ImageResizeMethod.None)
        {
            throw new ArgumentException("resize none cannot change the size", nameof(method));
        }
        var antialias = method == ImageResizeMethod.BilinearAntialias;
        // Width first (the contiguous axis), then height: PyTorch's separable order.
        float[] horizontal;
        if (width != outWidth)
        {
            var weights = Weights(width, outWidth, antialias);
            horizontal = new float[height * outWidth];
            for (var y = 0; y < height; y++)
            {
                var row = source.Slice(y * width, width);
                var dst = horizontal.AsSpan(y * outWidth, outWidth);
                for (var x = 0; x < outWidth; x++)
                {
                    dst[x] = weights.Apply(x, row, 1);
                }
            }
        }
        else
        {
            horizontal = source[..(height * width)].ToArray();
        }
        if (height != outHeight)
        {
            var weights = Weights(height, outHeight, antialias);
            for (var y = 0; y < outHeight; y++)
            {
                var dst = destination.Slice(y * outWidth, outWidth);
                for (var x = 0; x < outWidth; x++)
                {
                    dst[x] = weights.Apply(y, horizontal.AsSpan(x), outWidth);
                }
            }
        }
        else
        {
            horizontal.AsSpan().CopyTo(destination);
        }
    }

    /// <summary>Per output index: the first input index, how many follow, and their weights.</summary>
    internal sealed class AxisWeights(int[] first, int[] count, float[][] weights)
    {
        public int[] First { get; } = first;
        public int[] Count { get; } = count;
        public float[][] Values { get; } = weights;

        /// <summary>Sum of weight x sample along the axis, accumulated in float in index order, as PyTorch does.</summary>
        public float Apply(int i, ReadOnlySpan<float> line, int stride)
        {
            var w = Values[i];
            var start = First[i] * stride;
            var sum = line[start] * w[0];
            for (var j = 1; j < Count[i]; j++)
            {
                sum += line[start + j * stride] * w[j];
            }
            return sum;
        }
    }

    internal static AxisWeights Weights(int inSize, int outSize, bool antialias) =>
        antialias ? AntialiasWeights(inSize, outSize) : BilinearWeights(inSize, outSize);

    /// <summary>PyTorch's <c>_compute_indices_min_size_weights_aa</c> with the bilinear (triangle) filter, in float.</summary>
    private static AxisWeights AntialiasWeights(int inSize, int outSize)
    {
        var scale = (float)inSize / outSize;
        var support = scale >= 1f ? 1f * scale : 1f;
        var invScale = scale >= 1f ? 1f / scale : 1f;
        var maxSize = (int)Math.Ceiling(support) * 2 + 1;
        var first = new int[outSize];
        var count = new int[outSize];
        var weights = new float[outSize][];
        for (var i = 0; i < outSize; i++)
        {
            var center = scale * (i + 0.5f);
            var min = Math.Max((int)(center - support + 0.5f), 0);
            var size = Math.Clamp(Math.Min((int)(center + support + 0.5f), inSize) - min, 0, maxSize);
            var w = new float[Math.Max(size, 1)];
            var total = 0f;
            for (var j = 0; j < size; j++)
            {
                var x = Math.Abs((j + min - center + 0.5f) * invScale);
                var value = x < 1f ? 1f - x : 0f;
                w[j] = value;
                total += value;
            }
            if (total != 0f)
            {
                for (var j = 0; j < size; j++)
                {
                    w[j] /= total;
                }
            }
            first[i] = Math.Min(min, inSize - 1);
            count[i] = Math.Max(size, 1);
            weights[i] = w;
        }
        return new AxisWeights(first, count, weights);
    }

    /// <summary>PyTorch's linear weights with <c>align_corners=False</c>: two neighbours of <c>max(scale * (i + 0.5) - 0.5, 0)</c>.</summary>
    private static AxisWeights BilinearWeights(int inSize, int outSize)
    {
        var scale = (float)inSize / outSize;
        var first = new int[outSize];
        var count = new int[outSize];
        var weights = new float[outSize][];
        for (var i = 0; i < outSize; i++)
        {
            var real = Math.Max(scale * (i + 0.5f) - 0.5f, 0f);
            var index = Math.Min((int)MathF.Floor(real), inSize - 1);
            var lambda = Math.Clamp(real - index, 0f, 1f);
            first[i] = index;
            if (index < inSize - 1)
            {
                count[i] = 2;
                weights[i] = [1f - lambda, lambda];
            }
            else
            {
                count[i] = 1;
                weights[i] = [1f - lambda + lambda];
            }
        }
        return new AxisWeights(first, count, weights);
    }
}
