using System.Globalization;
using System.Runtime.InteropServices;

namespace MedServe.Tests.Support;

/// <summary>The shared held-out data: CSV rows and raw float32 tensors.</summary>
public static class TestData
{
    public sealed record BreastCancerRow(float[] Features, int Label, double PBenignLogreg, double PBenignMlp);

    public static IReadOnlyList<BreastCancerRow> BreastCancer() =>
        [.. File.ReadAllLines(Paths.Data("tabular", "breast_cancer_test.csv")).Skip(1).Where(l => l.Length > 0).Select(line =>
        {
            var v = line.Split(',');
            return new BreastCancerRow(
                [.. v.Take(30).Select(x => float.Parse(x, CultureInfo.InvariantCulture))],
                int.Parse(v[30], CultureInfo.InvariantCulture),
                double.Parse(v[31], CultureInfo.InvariantCulture),
                double.Parse(v[32], CultureInfo.InvariantCulture));
        })];

    public static float[] Floats(params string[] path) => MemoryMarshal.Cast<byte, float>(File.ReadAllBytes(Paths.Data(path))).ToArray();

    /// <summary>Nearest-neighbour upscale of one HxW plane by an integer factor.</summary>
    public static float[] Upscale(ReadOnlySpan<float> plane, int size, int factor)
    {
        var n = size * factor;
        var result = new float[n * n];
        for (var y = 0; y < n; y++)
        {
            for (var x = 0; x < n; x++)
            {
                result[y * n + x] = plane[y / factor * size + x / factor];
            }
        }
        return result;
    }
}
