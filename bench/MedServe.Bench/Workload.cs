using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;

namespace MedServe.Bench;

/// <summary>
/// One model under test: its package, real test inputs (one row per request) and the request bodies every front end
/// sends, encoded once up front so the load generator spends its time on the wire, not on encoding.
/// </summary>
internal sealed class Workload
{
    public const string Output = "probabilities";

    public required string Key { get; init; }
    public required string Name { get; init; }
    public required string Version { get; init; }
    public required string Input { get; init; }
    public required long[] RowShape { get; init; }
    public required string PackageDir { get; init; }
    public required string Description { get; init; }
    public required string DataSource { get; init; }
    public required float[][] Samples { get; init; }

    public int RowElements => Samples[0].Length;
    public string OnnxPath => Path.Combine(PackageDir, "model.onnx");
    public long[] RequestShape => [1, .. RowShape];

    public byte[][] JsonBodies { get; private set; } = [];
    public byte[][] BinaryBodies { get; private set; } = [];
    public int BinaryHeaderLength { get; private set; }
    public InferenceRequest[] GrainRequests { get; private set; } = [];

    /// <summary>Raw ONNX Runtime's answer to sample 0, to check every front end answers the same.</summary>
    public float[] Reference { get; set; } = [];

    public static Workload Load(string repo, string key, string dataDir)
    {
        var (dir, description) = key switch
        {
            "logreg" => ("breast-cancer-logreg", "overhead-bound: one row of 30 FP32 features per request"),
            "cnn" => ("ct-mr-classifier", "compute-bound: one 1x64x64 FP32 slice per request"),
            _ => throw new ArgumentException($"unknown model '{key}' (logreg or cnn)"),
        };
        var packageDir = Path.Combine(repo, "samples", dir);
        using var manifest = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(packageDir, "manifest.json")));
        var root = manifest.RootElement;
        var input = root.GetProperty("inputs")[0];
        var rowShape = input.GetProperty("shape").EnumerateArray().Skip(1).Select(d => d.GetInt64()).ToArray();
        var rowElements = (int)rowShape.Aggregate(1L, (a, b) => a * b);
        var (samples, source) = key == "logreg" ? ReadCsv(dataDir, rowElements) : ReadImages(dataDir, rowElements);
        var w = new Workload
        {
            Key = key,
            Name = root.GetProperty("name").GetString()!,
            Version = root.GetProperty("version").GetString()!,
            Input = input.GetProperty("name").GetString()!,
            RowShape = rowShape,
            PackageDir = packageDir,
            Description = description,
            DataSource = source,
            Samples = samples,
        };
        w.Encode();
        return w;
    }

    private void Encode()
    {
        JsonBodies = [.. Samples.Select(s => Write(writer =>
        {
            writer.WriteStartObject();
            writer.WriteStartArray("inputs");
            writer.WriteStartObject();
            WriteInputHead(writer);
            writer.WriteStartArray("data");
            foreach (var v in s)
            {
                writer.WriteNumberValue(v);
            }
            writer.WriteEndArray();
            writer.WriteEndObject();
            writer.WriteEndArray();
            writer.WriteStartArray("outputs");
            writer.WriteStartObject();
            writer.WriteString("name", Output);
            writer.WriteEndObject();
            writer.WriteEndArray();
            writer.WriteEndObject();
        }))];
        var header = Write(writer =>
        {
            writer.WriteStartObject();
            writer.WriteStartArray("inputs");
            writer.WriteStartObject();
            WriteInputHead(writer);
            writer.WriteStartObject("parameters");
            writer.WriteNumber("binary_data_size", RowElements * sizeof(float));
            writer.WriteEndObject();
            writer.WriteEndObject();
            writer.WriteEndArray();
            writer.WriteStartArray("outputs");
            writer.WriteStartObject();
            writer.WriteString("name", Output);
            writer.WriteStartObject("parameters");
            writer.WriteBoolean("binary_data", true);
            writer.WriteEndObject();
            writer.WriteEndObject();
            writer.WriteEndArray();
            writer.WriteEndObject();
        });
        BinaryHeaderLength = header.Length;
        BinaryBodies = [.. Samples.Select(s => header.Concat(MemoryMarshal.AsBytes(s.AsSpan()).ToArray()).ToArray())];
        GrainRequests = [.. Samples.Select(s => new InferenceRequest([TensorTypes.Create<float>(Input, RequestShape, s)], [Output]))];
    }

    private void WriteInputHead(Utf8JsonWriter writer)
    {
        writer.WriteString("name", Input);
        writer.WriteString("datatype", "FP32");
        writer.WriteStartArray("shape");
        foreach (var d in RequestShape)
        {
            writer.WriteNumberValue(d);
        }
        writer.WriteEndArray();
    }

    private static byte[] Write(Action<Utf8JsonWriter> write)
    {
        using var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream))
        {
            write(writer);
        }
        return stream.ToArray();
    }

    private static (float[][], string) ReadCsv(string dataDir, int features)
    {
        var path = Path.Combine(dataDir, "tabular", "breast_cancer_test.csv");
        if (!File.Exists(path))
        {
            Console.Error.WriteLine($"warning: {path} is missing; using a synthetic row");
            return ([[.. Enumerable.Range(0, features).Select(i => 10f + i)]], "synthetic row (test data missing)");
        }
        var rows = File.ReadAllLines(path).Skip(1).Where(l => l.Length > 0)
            .Select(l => l.Split(',').Take(features).Select(v => float.Parse(v, CultureInfo.InvariantCulture)).ToArray())
            .ToArray();
        return (rows, $"{rows.Length} held-out rows of {Path.GetFileName(path)}");
    }

    private static (float[][], string) ReadImages(string dataDir, int pixels)
    {
        var path = Path.Combine(dataDir, "images", "ct_mr_test_images_11x1x64x64.f32");
        if (!File.Exists(path))
        {
            Console.Error.WriteLine($"warning: {path} is missing; using a synthetic image");
            return ([[.. Enumerable.Range(0, pixels).Select(i => (float)(i % 64) * 10f)]], "synthetic image (test data missing)");
        }
        var all = MemoryMarshal.Cast<byte, float>(File.ReadAllBytes(path)).ToArray();
        var images = Enumerable.Range(0, all.Length / pixels).Select(i => all.AsSpan(i * pixels, pixels).ToArray()).ToArray();
        return (images, $"{images.Length} test slices of {Path.GetFileName(path)}");
    }
}
