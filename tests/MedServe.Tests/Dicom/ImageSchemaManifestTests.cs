using System.Text;
using System.Text.Json.Nodes;
using MedServe.Protocol;
using MedServe.Tests.Support;

namespace MedServe.Tests.Dicom;

/// <summary>
/// The image schema in the manifest: the samples declare their training preprocessing, and a schema that does not fit
/// its input (shape, datatype, channels, size) is refused at upload with an error naming the field.
/// </summary>
[Collection(NodeCollection.Name)]
public sealed class ImageSchemaManifestTests(NodeFixture node)
{
    private static JsonNode Sample(string model) => JsonNode.Parse(File.ReadAllText(Path.Combine(Paths.Samples, model, "manifest.json")))!;

    private static ModelManifest Parse(JsonNode manifest) => ManifestJson.Parse(Encoding.UTF8.GetBytes(manifest.ToJsonString()));

    [Fact]
    public void The_imaging_samples_declare_the_preprocessing_they_were_trained_with()
    {
        var classifier = Parse(Sample("ct-mr-classifier")).Inputs.Single().Image!;
        Assert.Equal(["CT", "MR"], classifier.Modalities);
        Assert.True(classifier.Rescale);
        Assert.Equal(ImageResizeMethod.BilinearAntialias, classifier.Resize);
        Assert.Equal((64, 64), (classifier.Height, classifier.Width));
        Assert.Null(classifier.Window);
        Assert.Equal(new ImageNormalize { Scale = 1, Offset = 0 }, classifier.Normalize);
        Assert.Equal((ImageLayout.Nchw, ImageColorMode.Reject, Monochrome1Mode.Keep, ImageBatchMode.Frames),
            (classifier.Layout, classifier.Color, classifier.Monochrome1, classifier.Batch));
        var segmenter = Parse(Sample("ct-bone-segmenter")).Inputs.Single();
        Assert.Equal([-1L, 1, -1, -1], segmenter.Shape);
        Assert.Equal(["CT"], segmenter.Image!.Modalities);
        Assert.Equal((256, 256), (segmenter.Image.Height, segmenter.Image.Width));
        // The tabular samples take no DICOM.
        Assert.Null(Parse(Sample("diabetes-linear")).Inputs.Single().Image);
    }

    public static TheoryData<string, string, string, string> BadSchemas => new()
    {
        // sample, JSON path to set (inputs[0].image...), value, field named
        { "ct-mr-classifier", "height", "128", "manifest.inputs[0].image.height" },
        { "ct-bone-segmenter", "height", "null", "manifest.inputs[0].image.height" },
        { "ct-mr-classifier", "layout", "\"NHWC\"", "manifest.inputs[0].image.layout" },
        { "ct-mr-classifier", "resize", "\"bicubic\"", "manifest.inputs[0].image.resize" },
        { "ct-mr-classifier", "modalities", "[]", "manifest.inputs[0].image.modalities" },
        { "ct-mr-classifier", "modalities", "[\"ct\"]", "manifest.inputs[0].image.modalities" },
        { "ct-mr-classifier", "color", "\"rgb\"", "manifest.inputs[0].image.color" },
        { "ct-mr-classifier", "monochrome1", "\"flip\"", "manifest.inputs[0].image.monochrome1" },
        { "ct-mr-classifier", "batch", "\"volume\"", "manifest.inputs[0].image.batch" },
        { "ct-mr-classifier", "window", """{"center": 40, "width": 0}""", "manifest.inputs[0].image.window" },
        { "ct-mr-classifier", "normalize", """{"scale": 0, "offset": 1}""", "manifest.inputs[0].image.normalize" },
        { "ct-bone-segmenter", "resize", "\"none\"", "manifest.inputs[0].image.height" },
    };

    [Theory]
    [MemberData(nameof(BadSchemas))]
    public void A_schema_that_does_not_fit_its_input_is_refused_naming_the_field(string sample, string key, string value, string field)
    {
        var manifest = Sample(sample);
        manifest["inputs"]![0]!["image"]![key] = JsonNode.Parse(value);
        var e = Assert.Throws<MedServeException>(() => Parse(manifest));
        Assert.Equal(ErrorKind.InvalidInput, e.Kind);
        Assert.Equal(field, e.Field);
        Assert.StartsWith(field, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Only_a_rank_4_FP32_input_takes_an_image_schema_and_only_inputs_do()
    {
        var image = Sample("ct-mr-classifier")["inputs"]![0]!["image"]!;
        var tabular = Sample("diabetes-linear");
        tabular["inputs"]![0]!["image"] = image.DeepClone();
        var e = Assert.Throws<MedServeException>(() => Parse(tabular));
        Assert.Equal("manifest.inputs[0].image", e.Field);
        Assert.Contains("rank-4 input", e.Message, StringComparison.Ordinal);

        var output = Sample("ct-mr-classifier");
        output["outputs"]![0]!["image"] = image.DeepClone();
        Assert.Equal("manifest.outputs[0].image", Assert.Throws<MedServeException>(() => Parse(output)).Field);

        var unknown = Sample("ct-mr-classifier");
        unknown["inputs"]![0]!["image"]!["interpolation"] = "lanczos";
        var u = Assert.Throws<MedServeException>(() => Parse(unknown));
        Assert.Contains("unknown field at manifest.inputs[0].image.interpolation", u.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Upload_refuses_a_schema_that_does_not_fit_the_input_naming_the_field()
    {
        var manifest = Sample("ct-mr-classifier");
        manifest["name"] = "dicom-bad-schema";
        manifest["inputs"]![0]!["image"]!["width"] = 32;
        var (status, body) = await node.UploadAsync(manifest, File.ReadAllBytes(Path.Combine(Paths.Samples, "ct-mr-classifier", "model.onnx")));
        Assert.True(status == 400, $"{status}: {body}");
        Assert.Equal("manifest.inputs[0].image.width", body!["field"]!.GetValue<string>());
        Assert.Contains("fixes dimension 3 to 64", body["detail"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Equal(404, (await node.GetJsonAsync("/api/models/dicom-bad-schema")).Status);
    }
}
