using System.Globalization;

namespace MedServe.Inference.Runtime;

/// <summary>
/// Runs a manifest's validation samples through a deployed version and compares what comes back:
/// element-wise within tolerance, or by Dice overlap for masks. A version takes traffic only if all pass.
/// </summary>
public static class ValidationRunner
{
    public static async Task<ValidationReport> RunAsync(ModelManifest manifest, Func<InferenceRequest, Task<InferenceResponse>> infer)
    {
        var spec = manifest.Validation;
        if (spec is null || spec.Samples.Length == 0)
        {
            return new ValidationReport(true, 0, 0, 0, null, "no validation samples in the manifest");
        }
        var failures = new List<string>();
        double maxDiff = 0;
        double? minDice = null;
        for (var s = 0; s < spec.Samples.Length; s++)
        {
            var sample = spec.Samples[s];
            var inputs = manifest.Inputs
                .Select(i => TensorTypes.FromDoubles(i.Name, i.Datatype, sample.Inputs[i.Name].Shape, sample.Inputs[i.Name].Data))
                .ToArray();
            InferenceResponse response;
            try
            {
                response = await infer(new InferenceRequest(inputs, [.. sample.ExpectedOutputs.Keys], $"validation-{s}"));
            }
            catch (MedServeException e)
            {
                failures.Add($"sample {s}: {e.Message}");
                continue;
            }
            foreach (var (name, expected) in sample.ExpectedOutputs)
            {
                var actual = response.Outputs.First(o => o.Name == name);
                if (!actual.Shape.SequenceEqual(expected.Shape))
                {
                    failures.Add($"sample {s} output '{name}': shape {actual.ShapeText}, expected [{string.Join(",", expected.Shape)}]");
                    continue;
                }
                if (expected.MinDice is { } need)
                {
                    var dice = Dice(actual, expected);
                    minDice = Math.Min(minDice ?? 1, dice);
                    if (!(dice >= need))
                    {
                        failures.Add($"sample {s} output '{name}': Dice {Fmt(dice)} < {Fmt(need)}");
                    }
                    continue;
                }
                var tolerance = expected.Tolerance ?? spec.Tolerance;
                var diff = MaxAbsDiff(actual, expected);
                maxDiff = Math.Max(maxDiff, diff);
                if (!(diff <= tolerance))
                {
                    failures.Add($"sample {s} output '{name}': max |diff| {Fmt(diff)} > tolerance {Fmt(tolerance)}");
                }
            }
        }
        var passed = failures.Count == 0;
        var summary = passed
            ? $"{spec.Samples.Length} sample(s) reproduced (max |diff| {Fmt(maxDiff)}{(minDice is { } md ? $", min Dice {Fmt(md)}" : "")})"
            : string.Join("; ", failures.Take(5)) + (failures.Count > 5 ? $"; and {failures.Count - 5} more" : "");
        return new ValidationReport(passed, spec.Samples.Length, failures.Count, maxDiff, minDice, summary);
    }

    private static double MaxAbsDiff(Tensor actual, ExpectedTensor expected)
    {
        double max = 0;
        for (var i = 0; i < expected.Data.Length; i++)
        {
            var d = Math.Abs(actual.GetDouble(i) - expected.Data[i]);
            if (double.IsNaN(d))
            {
                return double.PositiveInfinity;
            }
            max = Math.Max(max, d);
        }
        return max;
    }

    private static double Dice(Tensor actual, ExpectedTensor expected)
    {
        long both = 0, a = 0, b = 0;
        for (var i = 0; i < expected.Data.Length; i++)
        {
            var x = actual.GetDouble(i) >= expected.Threshold;
            var y = expected.Data[i] >= 0.5;
            if (x) { a++; }
            if (y) { b++; }
            if (x && y) { both++; }
        }
        return a + b == 0 ? 1 : 2.0 * both / (a + b);
    }

    private static string Fmt(double v) => v.ToString("G4", CultureInfo.InvariantCulture);
}
