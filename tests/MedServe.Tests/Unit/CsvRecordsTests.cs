using System.Text;

namespace MedServe.Tests.Unit;

/// <summary>Which CSV columns become a record's features: by name against the input's labels, by choice, or in order.</summary>
public sealed class CsvRecordsTests
{
    private static ModelManifest Model(string[]? labels, int width = 2) => new()
    {
        Name = "tabular",
        Version = "1",
        Inputs = [new TensorSpec { Name = "input", Datatype = TensorDatatype.FP32, Shape = [-1, width], Labels = labels }],
    };

    private static JobItem[] Read(string csv, ModelManifest manifest, string[]? columns = null) =>
        CsvRecords.ReadItems(Encoding.UTF8.GetBytes(csv), manifest, columns);

    private static double[] Values(JobItem item) => [.. Enumerable.Range(0, (int)item.Inputs[0].ElementCount).Select(i => item.Inputs[0].GetDouble(i))];

    // FP32 inputs: the values come back as the nearest float.
    private static void AssertClose(double[] expected, double[] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (var i = 0; i < expected.Length; i++)
        {
            Assert.True(Math.Abs(expected[i] - actual[i]) < 1e-4, $"value {i}: expected {expected[i]}, got {actual[i]}");
        }
    }

    [Fact]
    public void Header_names_match_the_features_trimmed_case_insensitive_with_underscores_for_spaces_in_the_labels_order()
    {
        // Header order differs from the model's; 'label' and 'p_benign' are no features and are ignored.
        var items = Read("label, Worst_AREA ,id,MEAN RADIUS,p_benign\n1,1349,patient-7,17.99,0.2\n0,624.1,,12.75,0.9\n", Model(["mean radius", "worst area"]));

        Assert.Equal(2, items.Length);
        Assert.Equal("patient-7", items[0].Id);
        AssertClose([17.99, 1349], Values(items[0]));
        Assert.Equal("2", items[1].Id);
        AssertClose([12.75, 624.1], Values(items[1]));
    }

    [Fact]
    public void Two_columns_for_one_feature_are_refused_naming_it()
    {
        var e = Assert.Throws<MedServeException>(() => Read("mean radius,worst area,Mean_Radius\n1,2,3\n", Model(["mean radius", "worst area"])));
        Assert.Equal(ErrorKind.InvalidInput, e.Kind);
        Assert.Equal("mean radius", e.Field);
        Assert.Contains("'mean radius'", e.Message, StringComparison.Ordinal);
        // The caller's own header text is not echoed (it could be anything): the columns are named by position.
        Assert.Contains("columns 1 and 3", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("Mean_Radius", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Missing_features_are_refused_naming_them()
    {
        var one = Assert.Throws<MedServeException>(() => Read("mean radius,label\n1,0\n", Model(["mean radius", "worst area"])));
        Assert.Equal(ErrorKind.InvalidInput, one.Kind);
        Assert.Equal("worst area", one.Field);
        Assert.Contains("'worst area'", one.Message, StringComparison.Ordinal);

        // Many missing: the first few by name and a count of the rest.
        var labels = Enumerable.Range(0, 8).Select(i => $"f{i}").ToArray();
        var many = Assert.Throws<MedServeException>(() => Read("f0\n1\n", Model(labels, 8)));
        Assert.Equal("columns", many.Field);
        Assert.Contains("'f1', 'f2', 'f3', 'f4', 'f5' and 2 more", many.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Chosen_columns_still_pick_by_exact_name_in_the_order_given()
    {
        var items = Read("a,b,c\n1,2,3\n", Model(["mean radius", "worst area"]), ["c", "a"]);
        Assert.Equal([3.0, 1.0], Values(Assert.Single(items)));
    }

    [Fact]
    public void An_input_without_labels_takes_every_column_but_the_id_in_order()
    {
        var items = Read("x,id,y\n1,r1,2\n", Model(null));
        Assert.Equal("r1", Assert.Single(items).Id);
        Assert.Equal([1.0, 2.0], Values(items[0]));

        var wide = Assert.Throws<MedServeException>(() => Read("x,y,z\n1,2,3\n", Model(null)));
        Assert.Equal("columns", wide.Field);
    }

    [Fact]
    public void Quoted_fields_blank_lines_and_a_byte_order_mark_are_read_and_lines_are_numbered_from_the_header()
    {
        var items = Read("\uFEFFid,a,b\n\"p,1\",\"1.5\",2\n\n\"x\",3,not-a-number\n", Model(null));

        Assert.Equal(["p,1", "x"], items.Select(i => i.Id));
        AssertClose([1.5, 2], Values(items[0]));
        Assert.Equal("CSV line 4: column 3: not a number", items[1].Error);
    }

    [Theory]
    [InlineData("", "the CSV is empty")]
    [InlineData("a,b\n1,2\n3\n", "CSV line 3 has 1 fields; the header has 2")]
    [InlineData("a,b\n1,2\n3,4,5\n", "CSV line 3 has 3 fields; the header has 2")]
    [InlineData("a,b\n1,2\n\"3,4\n", "CSV line 3 is malformed")]
    public void Whole_file_errors_refuse_it_naming_the_line(string csv, string expected)
    {
        var e = Assert.Throws<MedServeException>(() => Read(csv, Model(null)));
        Assert.Equal(ErrorKind.InvalidInput, e.Kind);
        Assert.Equal(expected, e.Message);
    }
}
