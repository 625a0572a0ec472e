using System.Text;
using System.Text.Json.Nodes;
using MedServe.Protocol;
using MedServe.Tests.Support;

namespace MedServe.Tests.Records;

/// <summary>
/// The feature schema of a tabular input: the sample manifests declare it and every held-out row passes it; upload
/// refuses a schema that does not match the labels, naming the field; the field rules convert units, check ranges and
/// coded values, and stand defaults in for optional features, naming the feature and never the value.
/// </summary>
public sealed class FeatureSchemaTests
{
    private static ModelManifest Sample(string name) =>
        ManifestJson.Parse(File.ReadAllBytes(Path.Combine(Paths.Samples, name, "manifest.json")));

    [Fact]
    public void The_sample_manifests_declare_features_with_loinc_codes_where_they_exist_and_every_held_out_row_passes()
    {
        var diabetes = Sample("diabetes-linear");
        var features = diabetes.Inputs[0].Features!;
        Assert.Equal(diabetes.Inputs[0].Labels, features.Select(f => f.Name));
        Assert.Equal(["30525-0", null, "39156-5", "8478-0", "2093-3", "2089-1", "2085-9", "9830-1", "2571-8", "2345-7"], features.Select(f => f.Code?.Code));
        Assert.All(features.Where(f => f.Code is not null), f => Assert.Equal(CodeSystems.Loinc, f.Code!.System));
        Assert.Equal(["a", null, "kg/m2", "mm[Hg]", "mg/dL", "mg/dL", "mg/dL", "{ratio}", null, "mg/dL"], features.Select(f => f.Unit));
        Assert.Equal("ln", features[8].Code!.Transform);

        var values = new FeatureValues(diabetes);
        foreach (var (row, _) in RecordsApiTests.Diabetes())
        {
            var read = values.Read([.. row.Select((v, k) => (k, (double?)v, (string?)null, false))]);
            Assert.True(read.Ok, string.Join("; ", read.Errors.Select(e => e.Message)));
        }
        foreach (var name in new[] { "breast-cancer-logreg", "breast-cancer-mlp" })
        {
            var manifest = Sample(name);
            Assert.All(manifest.Inputs[0].Features!, f => Assert.Null(f.Code)); // no LOINC codes for these features
            var bc = new FeatureValues(manifest);
            foreach (var row in TestData.BreastCancer())
            {
                var read = bc.Read([.. row.Features.Select((v, k) => (k, (double?)v, (string?)null, false))]);
                Assert.True(read.Ok, string.Join("; ", read.Errors.Select(e => e.Message)));
            }
        }
    }

    [Fact]
    public void Units_convert_by_ucum_and_molar_mass_and_unknown_units_are_refused()
    {
        var values = new FeatureValues(Sample("diabetes-linear"));
        Assert.Equal(90.0, values.TryValue(9, 90 / 18.016, "mmol/L", out _)!.Value, 9);       // glucose
        Assert.Equal(280.0, values.TryValue(4, 280 / 38.67, "mmol/L", out _)!.Value, 9);       // total cholesterol
        Assert.Equal(55.0, values.TryValue(6, 0.55, "g/L", out _)!.Value, 9);                  // HDL, mass units
        Assert.Equal(90.0, values.TryValue(9, 90, "mg/dL", out _)!.Value, 12);                 // identity
        Assert.Equal(90.0, values.TryValue(3, 90 * 0.133322387415, "kPa", out _)!.Value, 6);   // pressure
        Assert.Equal(Math.Log(150), values.TryValue(8, 150 / 88.57, "mmol/L", out _)!.Value, 9); // triglycerides -> ln(mg/dL)

        Assert.Null(values.TryValue(9, 5, "mmol/mol", out var unknown));
        Assert.Equal("'s6': the unit given does not convert to mg/dL (units that do: mg/dL, mmol/L, g/L, g/dL, mg/L, ug/mL, mol/L, umol/L)", unknown);
        Assert.Null(values.TryValue(0, 61, "mg/dL", out var wrongKind));
        Assert.StartsWith("'age': the unit given does not convert to a (units that do: a, mo, wk, d)", wrongKind, StringComparison.Ordinal);
        Assert.Null(values.TryValue(1, 1, "1", out var unitless));
        Assert.Equal("'sex' takes a plain number, without a unit", unitless);
        Assert.Null(values.TryValue(9, 9000, null, out var range));
        Assert.Equal("'s6' is out of range: diabetes-linear takes 43.5 to 155 mg/dL", range);
        Assert.DoesNotContain("9000", range, StringComparison.Ordinal);
        Assert.Null(values.TryValue(9, double.NaN, null, out var nan));
        Assert.Equal("'s6' is not a finite number", nan);
    }

    [Fact]
    public void An_optional_feature_takes_its_default_and_nan_stands_in_only_where_the_input_allows_it()
    {
        var manifest = new ModelManifest
        {
            Name = "opt",
            Version = "1",
            Inputs = [new TensorSpec
            {
                Name = "input", Shape = [-1, 3], Labels = ["a", "b", "c"], AllowNonFinite = true,
                Features = [new FeatureSchema { Name = "a" }, new FeatureSchema { Name = "b", Required = false, Default = 7 }, new FeatureSchema { Name = "c", Required = false }],
            }],
            Outputs = [new TensorSpec { Name = "y", Shape = [-1, 1] }],
        };
        ManifestJson.Check(manifest);
        var values = new FeatureValues(manifest);
        var row = values.Read([(0, 1.5, null, false)]);
        Assert.True(row.Ok);
        Assert.Equal(1.5, row.Values![0]);
        Assert.Equal(7, row.Values[1]);
        Assert.True(double.IsNaN(row.Values[2]));
        var missing = values.Read([(1, 2.0, null, false)]);
        Assert.Equal(["a"], missing.Errors.Select(e => e.Field));
    }

    [Fact]
    public void Upload_refuses_a_feature_schema_that_does_not_match_the_labels_naming_the_field()
    {
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(Paths.Samples, "diabetes-linear", "manifest.json")))!;
        MedServeException Refused(Action<JsonNode> change)
        {
            var copy = JsonNode.Parse(json.ToJsonString())!;
            change(copy);
            return Assert.Throws<MedServeException>(() => ManifestJson.Parse(Encoding.UTF8.GetBytes(copy.ToJsonString())));
        }
        var renamed = Refused(m => m["inputs"]![0]!["features"]![4]!["name"] = "cholesterol");
        Assert.Equal("manifest.inputs[0].features[4].name", renamed.Field);
        Assert.Contains("must equal manifest.inputs[0].labels[4] ('s1')", renamed.Message, StringComparison.Ordinal);

        var fewer = Refused(m => m["inputs"]![0]!["features"]!.AsArray().RemoveAt(9));
        Assert.Equal("manifest.inputs[0].features", fewer.Field);

        var inverted = Refused(m => m["inputs"]![0]!["features"]![0]!["min"] = 500);
        Assert.Equal("manifest.inputs[0].features[0].min", inverted.Field);

        var optional = Refused(m => m["inputs"]![0]!["features"]![0]!["required"] = false);
        Assert.Equal("manifest.inputs[0].features[0].default", optional.Field);

        var nanDefault = Refused(m =>
        {
            m["inputs"]![0]!["features"]![0]!["required"] = false;
            m["inputs"]![0]!["features"]![0]!["default"] = "NaN";
        });
        Assert.Equal("manifest.inputs[0].features[0].default", nanDefault.Field);

        var transform = Refused(m => m["inputs"]![0]!["features"]![8]!["code"]!["transform"] = "log10");
        Assert.Equal("manifest.inputs[0].features[8].code.transform", transform.Field);

        var onOutput = Refused(m => m["outputs"]![0]!["features"] = new JsonArray(new JsonObject { ["name"] = "progression" }));
        Assert.Equal("manifest.outputs[0].features", onOutput.Field);
    }

    [Fact]
    public void Csv_headers_give_units_and_a_bad_row_is_an_item_carrying_its_error()
    {
        var manifest = Sample("diabetes-linear");
        var csv = "id,age,sex,bmi,bp,s1,s2,s3,s4,s5,s6 [mmol/L]\nok,61,1,25.8,90,280,195.4,55,5,4.9972,4.9956\nbad,61,1,25.8,90,280,195.4,55,5,4.9972,90\n";
        var items = CsvRecords.ReadItems(Encoding.UTF8.GetBytes(csv), manifest, null);
        Assert.Equal(90.0, items[0].Inputs[0].GetDouble(9), 2);
        Assert.Null(items[0].Error);
        Assert.Equal("bad", items[1].Id);
        Assert.Empty(items[1].Inputs);
        // 90 mmol/L of glucose is 1621 mg/dL: out of range, named by line and feature.
        Assert.Equal("CSV line 3: 's6' is out of range: diabetes-linear takes 43.5 to 155 mg/dL", items[1].Error);
        Assert.Equal(("bp", "mm[Hg]"), FeatureValues.SplitHeader(" bp [mm[Hg]] "));
        Assert.Equal(("s6", (string?)null), FeatureValues.SplitHeader("s6"));
    }
}
