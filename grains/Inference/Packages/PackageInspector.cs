using MedServe.Inference.Runtime;

namespace MedServe.Inference.Packages;

/// <summary>Checks that a manifest tells the truth about its ONNX graph before the package is accepted.</summary>
public static class PackageInspector
{
    /// <summary>Opens the graph and compares inputs and outputs (names, datatypes, ranks, fixed dimensions) with the manifest.</summary>
    public static void Inspect(ModelPackage package)
    {
        var (inputs, outputs) = OnnxModel.ReadSignature(package.Model);
        Compare(package.Manifest.Inputs, inputs, "inputs");
        Compare(package.Manifest.Outputs, outputs, "outputs", allowSubset: true);
    }

    private static void Compare(TensorSpec[] declared, IReadOnlyList<GraphTensor> graph, string field, bool allowSubset = false)
    {
        var byName = graph.ToDictionary(g => g.Name, StringComparer.Ordinal);
        for (var i = 0; i < declared.Length; i++)
        {
            var spec = declared[i];
            var at = $"manifest.{field}[{i}]";
            if (!byName.TryGetValue(spec.Name, out var real))
            {
                throw MedServeException.Invalid($"{at}.name '{spec.Name}' is not in the ONNX graph, whose {field} are {string.Join(", ", graph.Select(g => $"'{g.Name}'"))}", $"{at}.name");
            }
            if (real.Datatype != spec.Datatype)
            {
                throw MedServeException.Invalid($"{at}.datatype is {spec.Datatype} but the graph's '{spec.Name}' is {real.Datatype}", $"{at}.datatype");
            }
            if (real.Shape.Length != spec.Shape.Length)
            {
                throw MedServeException.Invalid($"{at}.shape {spec.ShapeText} has rank {spec.Shape.Length} but the graph's '{spec.Name}' is {real.ShapeText}", $"{at}.shape");
            }
            for (var d = 0; d < spec.Shape.Length; d++)
            {
                if (real.Shape[d] > 0 && spec.Shape[d] != real.Shape[d])
                {
                    throw MedServeException.Invalid($"{at}.shape {spec.ShapeText} does not match the graph's '{spec.Name}' {real.ShapeText} in dimension {d}", $"{at}.shape");
                }
                if (real.Shape[d] < 0 && spec.Shape[d] > 0 && d == 0)
                {
                    // A fixed batch dimension over a dynamic graph would refuse batches the graph can run.
                    throw MedServeException.Invalid($"{at}.shape fixes the batch dimension to {spec.Shape[d]} but the graph's is dynamic; use -1", $"{at}.shape");
                }
            }
        }
        if (!allowSubset)
        {
            foreach (var g in graph)
            {
                if (declared.All(s => s.Name != g.Name))
                {
                    throw MedServeException.Invalid($"manifest.{field} lacks the graph's '{g.Name}' ({g.Datatype} {g.ShapeText})", $"manifest.{field}");
                }
            }
        }
    }
}
