using System.IO.Compression;
using System.Text.Json;
using System.Text.Json.Nodes;
using MedServe.Cli;

namespace MedServe.Tests.Support;

/// <summary>Runs the <c>medserve</c> CLI in-process (its real entry point) and captures what it prints.</summary>
public static class CliRun
{
    public sealed record Result(int Code, string Out, string Err)
    {
        /// <summary>stdout parsed as JSON (for <c>--json</c> runs), after asserting exit code 0.</summary>
        public JsonNode Json()
        {
            Assert.True(Code == 0, $"exit {Code}; stderr: {Err}");
            return JsonNode.Parse(Out)!;
        }

        public override string ToString() => $"exit {Code}\nstdout: {Out}\nstderr: {Err}";
    }

    public static async Task<Result> RunAsync(params string[] args)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        var code = await MedServeCli.RunAsync(args, output, error);
        return new Result(code, output.ToString(), error.ToString());
    }

    /// <summary>Writes a package directory (manifest.json + model.onnx) and returns its path.</summary>
    public static string WritePackage(object manifest, byte[] model)
    {
        var dir = Paths.TempDirectory("package");
        File.WriteAllBytes(Path.Combine(dir, "manifest.json"), JsonSerializer.SerializeToUtf8Bytes(manifest));
        File.WriteAllBytes(Path.Combine(dir, "model.onnx"), model);
        return dir;
    }

    /// <summary>The same package as zip bytes.</summary>
    public static byte[] Zip(object manifest, byte[] model)
    {
        var dir = WritePackage(manifest, model);
        try
        {
            using var zip = new MemoryStream();
            ZipFile.CreateFromDirectory(dir, zip);
            return zip.ToArray();
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
