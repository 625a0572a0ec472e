namespace MedServe.Tests.Support;

/// <summary>Manifests for test packages, as a user would write them (snake_case JSON).</summary>
public static class Manifests
{
    /// <summary>A manifest for <see cref="OnnxBuilder.Identity"/> whose validation sample echoes zeros.</summary>
    public static Dictionary<string, object?> Identity(string name, string version, OnnxBuilder.Io[] ios, bool allowNonFinite = false, double expectedEcho = 0)
    {
        var shape = ios[0].Dims.Select(d => d ?? 2).ToArray();
        var count = (int)shape.Aggregate(1L, (a, b) => a * b);
        return new Dictionary<string, object?>
        {
            ["name"] = name,
            ["version"] = version,
            ["description"] = "identity test model",
            ["inputs"] = ios.Select(i => new Dictionary<string, object?>
            {
                ["name"] = i.Name,
                ["datatype"] = i.Datatype.ToString(),
                ["shape"] = i.Dims.Select(d => d ?? -1).ToArray(),
                ["allow_non_finite"] = allowNonFinite,
            }).ToArray(),
            ["outputs"] = ios.Select(i => new Dictionary<string, object?>
            {
                ["name"] = i.Name + "_out",
                ["datatype"] = i.Datatype.ToString(),
                ["shape"] = i.Dims.Select(d => d ?? -1).ToArray(),
            }).ToArray(),
            ["intended_use"] = "tests",
            ["provenance"] = new Dictionary<string, object?> { ["trained_by"] = "OnnxBuilder" },
            ["validation"] = new Dictionary<string, object?>
            {
                ["tolerance"] = 0,
                ["samples"] = new[]
                {
                    new Dictionary<string, object?>
                    {
                        ["inputs"] = ios.ToDictionary(i => i.Name, _ => (object)new { shape, data = new double[count] }),
                        ["expected_outputs"] = new Dictionary<string, object> { [ios[0].Name + "_out"] = new { shape, data = Enumerable.Repeat(expectedEcho, count).ToArray() } },
                    },
                },
            },
        };
    }

    /// <summary>A manifest of one input and one output, with one validation sample (values as doubles).</summary>
    public static Dictionary<string, object?> Single(string name, string version,
        (string Name, TensorDatatype Datatype, long[] Shape, long[] SampleShape, double[] SampleData) input,
        (string Name, TensorDatatype Datatype, long[] Shape, long[] SampleShape, double[] SampleData) output) => new()
        {
            ["name"] = name,
            ["version"] = version,
            ["description"] = "test model",
            ["inputs"] = new[] { new Dictionary<string, object?> { ["name"] = input.Name, ["datatype"] = input.Datatype.ToString(), ["shape"] = input.Shape } },
            ["outputs"] = new[] { new Dictionary<string, object?> { ["name"] = output.Name, ["datatype"] = output.Datatype.ToString(), ["shape"] = output.Shape } },
            ["intended_use"] = "tests",
            ["provenance"] = new Dictionary<string, object?> { ["trained_by"] = "OnnxBuilder" },
            ["validation"] = new Dictionary<string, object?>
            {
                ["tolerance"] = 0,
                ["samples"] = new[]
                {
                    new Dictionary<string, object?>
                    {
                        ["inputs"] = new Dictionary<string, object> { [input.Name] = new { shape = input.SampleShape, data = input.SampleData } },
                        ["expected_outputs"] = new Dictionary<string, object> { [output.Name] = new { shape = output.SampleShape, data = output.SampleData } },
                    },
                },
            },
        };
}
